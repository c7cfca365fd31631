"""Acme's shared helpers, imported by its tasks (this folder's parent is on sys.path)."""
