"""A team's own folder, added to the product's (WORKER_PROJECT): where each of its pieces goes.

    acme_worker/
      tasks/            its job types: DAG files, parsed by Airflow as a DAG bundle of their own
      templates/email/  its e-mail templates, <name>/<locale>/{subject.txt,body.txt,body.html}
      templates/pdf/    its document templates, <name>/<locale>.html with their CSS and images
      crontab           graphile-worker's crontab file
      utils/, ...       anything else, importable from its tasks (the folder is on sys.path)

graphile-worker's layout (a `tasks/` folder, shared modules beside it, a `crontab` file), so a team's
worker app moves as a folder. Its templates are found before the product's: a team may replace
`welcome` with its own. Nothing of it goes inside the product's `dags/`, `plugins/` or `include/`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from pathlib import Path

from jobqueue import paths
from jobqueue.exceptions import ConfigurationError

# The DAG bundle of the project's tasks/, beside Airflow's own `dags-folder` (the product's dags/).
BUNDLE = "project"
PRODUCT_BUNDLE = "dags-folder"
TEMPLATE_KINDS = ("email", "pdf")


@dataclasses.dataclass(frozen=True)
class Project:
    root: Path

    @classmethod
    def at(cls, folder: Path, setting: str = "WORKER_PROJECT") -> Project:
        """The project in `folder`, which must be a folder with a tasks/ folder in it."""
        root = folder.resolve()
        if not root.is_dir():
            raise ConfigurationError(
                f"{setting}={folder}: no such folder (a team's folder: tasks/, templates/, crontab)"
            )
        project = cls(root)
        if not project.tasks.is_dir():
            raise ConfigurationError(f"{setting}={folder}: it has no tasks/ folder, where its job types go")
        return project

    @property
    def tasks(self) -> Path:
        return self.root / "tasks"

    @property
    def crontab(self) -> Path:
        return self.root / "crontab"

    def templates(self, kind: str) -> Path:
        return self.root / "templates" / kind


def template_dirs(kind: str, project: Project | None) -> list[Path]:
    """Where templates of `kind` ("email", "pdf") are looked for, in order: the project's, then ours."""
    ours = paths.INCLUDE_DIR / "templates" / kind
    theirs = project.templates(kind) if project is not None else None
    return [theirs, ours] if theirs is not None and theirs.is_dir() else [ours]


def template_names(directories: Iterable[Path]) -> list[str]:
    """The templates found in these folders (a template is a folder), each named once."""
    return sorted(
        {
            entry.name
            for directory in directories
            if directory.is_dir()
            for entry in directory.iterdir()
            if entry.is_dir()
        }
    )
