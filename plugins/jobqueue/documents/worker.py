"""A PDF render worker process: reads one JSON request per line on stdin, writes the PDF to the
requested path and one JSON answer per line on stdout. Started by jobqueue.documents.pdf.PdfRenderer."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from jobqueue import settings
from jobqueue.documents import rendering
from jobqueue.exceptions import PermanentJobError


def serve() -> None:
    # stdout carries the protocol: anything else printed goes to stderr.
    protocol, sys.stdout = sys.stdout, sys.stderr
    rendering.warm_up()  # imports and fonts: not counted against the first document's time limit
    protocol.write(json.dumps({"ready": True}) + "\n")
    protocol.flush()
    for line in sys.stdin:
        request = json.loads(line)
        try:
            document = rendering.DocumentHtml(request["html"], Path(request["folder"]))
            roots = [Path(root) for root in request["roots"]]
            rendered = rendering.render_pdf(document, settings.PdfLimits(**request["limits"]), roots)
            Path(request["output"]).write_bytes(rendered.content)
            answer: dict = {"refused_urls": rendered.refused_urls}
        except PermanentJobError as exc:
            answer = {"error": str(exc), "permanent": True}
        except Exception as exc:
            answer = {"error": f"{type(exc).__name__}: {exc}", "permanent": False}
        protocol.write(json.dumps(answer) + "\n")
        protocol.flush()


if __name__ == "__main__":
    serve()
