"""Where the project's non-Python files live (include/), relative to this package under plugins/."""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
INCLUDE_DIR = PROJECT_ROOT / "include"
SQL_DIR = INCLUDE_DIR / "sql"
MIGRATIONS_DIR = SQL_DIR / "migrations"
