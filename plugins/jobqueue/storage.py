"""Documents in object storage (airflow.sdk.ObjectStoragePath), confined to one root."""

from __future__ import annotations

from typing import Any

from jobqueue import settings
from jobqueue.exceptions import StorageError


def storage_root() -> Any:
    from airflow.sdk import ObjectStoragePath

    return ObjectStoragePath(settings.storage_url())


def resolve(url: str, root: Any = None) -> Any:
    """`url` relative to the root, or absolute under it; anything else is refused."""
    from airflow.sdk import ObjectStoragePath

    root = root if root is not None else storage_root()
    path = ObjectStoragePath(url) if "://" in url else root / url
    root_text = str(root).rstrip("/") + "/"
    if ".." in url.split("/") or not str(path).startswith(root_text):
        raise StorageError(f"{url!r} is outside the document storage {root_text}")
    return path


def read_document(url: str) -> bytes:
    path = resolve(url)
    if not path.exists():
        raise StorageError(f"document {url!r} does not exist")
    return bytes(path.read_bytes())


def write_document(relative: str, content: bytes) -> str:
    """Stores a document under the root; returns the path to give back to read_document."""
    path = resolve(relative)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return relative
