"""A PostgreSQL cluster of our own, in a folder, listening on loopback only.

Used by `make run` (under the data dir) and by the tests (a throwaway cluster). As root, the server
runs as the `postgres` system user (or `nobody`), since initdb refuses to run as root.
"""

from __future__ import annotations

import dataclasses
import os
import pwd
import shutil
import subprocess
from pathlib import Path

from jobqueue.exceptions import ConfigurationError

INSTALL_HINT = (
    "PostgreSQL server binaries (initdb, pg_ctl) were not found. On Debian or Ubuntu install them "
    "with `apt-get install postgresql`, or set WORKER_PG_BIN to their folder, or point "
    "WORKER_DATABASE_URL at an existing server."
)


def find_bin_dir(debian_root: Path = Path("/usr/lib/postgresql"), path: str | None = None) -> Path:
    """WORKER_PG_BIN, else the folder of pg_ctl on PATH, else Debian's newest version."""
    explicit = os.environ.get("WORKER_PG_BIN")
    candidates = [Path(explicit)] if explicit else []
    on_path = shutil.which("pg_ctl", path=path)
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    debian = sorted(
        (p for p in debian_root.glob("*/bin") if p.parent.name.isdigit()),
        key=lambda p: int(p.parent.name),
        reverse=True,
    )
    candidates.extend(debian)
    for candidate in candidates:
        if (candidate / "initdb").is_file() and (candidate / "pg_ctl").is_file():
            return candidate
    raise ConfigurationError(INSTALL_HINT)


def _server_user() -> str | None:
    """The user to run the server as, or None to run as ourselves (we are not root)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise ConfigurationError("running as root needs a `postgres` or `nobody` user for PostgreSQL")


@dataclasses.dataclass
class LocalCluster:
    data_dir: Path
    port: int
    durable: bool = True

    def __post_init__(self) -> None:
        self.bin_dir = find_bin_dir()
        self.user = _server_user()

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    @property
    def log_file(self) -> Path:
        return self.data_dir.parent / "postgresql.log"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin_dir / args[0]), *args[1:]]
        if self.user:
            command = ["runuser", "-u", self.user, "--", *command]
        return subprocess.run(command, check=check, capture_output=True, text=True)

    def initialized(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def init(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.chmod(0o700)
        if self.user:
            shutil.chown(self.data_dir, self.user, self.user)
            self.log_file.touch()
            shutil.chown(self.log_file, self.user, self.user)
        result = self._run(
            "initdb", "-D", str(self.data_dir), "-U", "postgres", "--auth=trust",
            "-E", "UTF8", "--no-locale", "--no-instructions", check=False,
        )  # fmt: skip
        if result.returncode != 0:
            raise ConfigurationError(f"initdb failed in {self.data_dir}:\n{result.stderr}")

    def running(self) -> bool:
        return self._run("pg_ctl", "status", "-D", str(self.data_dir), check=False).returncode == 0

    def start(self) -> None:
        if not self.initialized():
            self.init()
        if self.running():
            return
        # No Unix socket: loopback TCP only, so nothing depends on /var/run/postgresql.
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=''"
        if not self.durable:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        result = self._run(
            "pg_ctl", "start", "-w", "-t", "60", "-D", str(self.data_dir),
            "-l", str(self.log_file), "-o", options, check=False,
        )  # fmt: skip
        if result.returncode != 0:
            log = self.log_file.read_text()[-2000:] if self.log_file.exists() else ""
            raise ConfigurationError(
                f"PostgreSQL did not start on 127.0.0.1:{self.port} "
                f"(is the port taken? set WORKER_PG_PORT):\n{result.stderr}\n{log}"
            )

    def stop(self) -> None:
        if self.initialized() and self.running():
            self._run("pg_ctl", "stop", "-w", "-m", "fast", "-D", str(self.data_dir), check=False)

    def create_database(self, name: str, template: str | None = None) -> bool:
        """Creates the database unless it exists: whether it did."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.url(), autocommit=True) as conn:
            exists = conn.execute("select 1 from pg_database where datname = %s", [name]).fetchone()
            if exists:
                return False
            statement = sql.SQL("create database {}").format(sql.Identifier(name))
            if template:
                statement += sql.SQL(" template {}").format(sql.Identifier(template))
            conn.execute(statement)
            return True
