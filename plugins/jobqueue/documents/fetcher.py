"""What WeasyPrint may fetch while rendering: `data:` URLs and files under the given folders (the
templates' own, the shipped fonts). Everything else (other local files, any network address,
redirects) is refused, left out of the PDF, and reported in the job's result."""

from __future__ import annotations

import mimetypes
import urllib.parse
from pathlib import Path
from typing import Any


def allowed_file(url: str, roots: list[Path]) -> Path | None:
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme != "file" or parsed.netloc not in ("", "localhost"):
        return None
    path = Path(urllib.parse.unquote(parsed.path)).resolve()
    return path if any(path.is_relative_to(root.resolve()) for root in roots) and path.is_file() else None


def make_url_fetcher(roots: list[Path], refused: list[str]) -> Any:
    from weasyprint.urls import URLFetcher, URLFetcherResponse

    class SafeURLFetcher(URLFetcher):
        """Serves `data:` URLs and files under `roots`; refuses and records everything else."""

        def __init__(self) -> None:
            super().__init__(allowed_protocols=("data", "file"), allow_redirects=False)

        def fetch(self, url: str, headers: Any = None) -> Any:
            if url.startswith("data:"):
                return super().fetch(url, headers)
            path = allowed_file(url, roots)
            if path is None:
                refused.append(url[:200])
                raise ValueError(f"refused to fetch {url[:200]}")
            # WeasyPrint only takes a stylesheet served as text/css.
            kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            return URLFetcherResponse(path.as_uri(), path.read_bytes(), headers={"Content-Type": kind})

    return SafeURLFetcher()
