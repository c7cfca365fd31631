"""Where a template's files are read from: a template is a folder (`welcome/`, `invoice/`), found in
the first of several template folders that has it (the project's, then ours), and read whole from
there. A team's `welcome` with only `en/` therefore fails a French welcome naming the missing file,
rather than sending the product's French one beside the team's English: a template of the team's
replaces ours whole, never locale by locale."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import jinja2


class FolderLoader(jinja2.BaseLoader):
    def __init__(self, directories: Sequence[Path]) -> None:
        self.loaders = [(Path(directory), jinja2.FileSystemLoader(directory)) for directory in directories]

    def get_source(
        self, environment: jinja2.Environment, template: str
    ) -> tuple[str, str | None, Callable[[], bool] | None]:
        folder = template.split("/", 1)[0]
        for directory, loader in self.loaders:
            if (directory / folder).is_dir():
                return loader.get_source(environment, template)
        raise jinja2.TemplateNotFound(template)
