"""The whole system on one machine: `make run`, `make stop`, `make psql`.

    python -m devtools.stack run|prepare|stop|psql|url

`run` starts a local PostgreSQL (unless WORKER_DATABASE_URL names one), applies the migrations,
starts the SMTP sink (unless AIRFLOW_CONN_SMTP_DEFAULT names a server) and Airflow's api-server, scheduler,
dag-processor and triggerer, all on loopback; it restarts a component that dies and stops
everything on Ctrl-C or SIGTERM (`make stop`). `prepare` does what `run` does before it starts
Airflow (databases, migrations) and leaves nothing running.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO

import psutil

from devtools import airflow_env
from devtools.localpg import LocalCluster
from jobqueue import migrations, paths, settings
from jobqueue.exceptions import ConfigurationError, WorkerError

STOP_GRACE_SECONDS = 20
READY_TIMEOUT_SECONDS = 240


def log(message: str) -> None:
    print(f"[stack {time.strftime('%H:%M:%S')}] {message}", flush=True)


@dataclasses.dataclass
class Component:
    name: str
    command: list[str]
    env: dict[str, str]
    log_path: Path
    group_file: Path  # the process group's id while it runs: what `make stop` finds if we die
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restarts: int = 0
    next_start: float = 0.0
    _log_file: IO[bytes] | None = None

    def start(self) -> None:
        self._log_file = self.log_path.open("ab")
        # A session of its own: Ctrl-C reaches only the supervisor, which stops components in order,
        # and the whole process group (forked workers included) can be signalled at once.
        self.process = subprocess.Popen(
            self.command,
            env=self.env,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.group_file.write_text(str(self.process.pid))
        self.started_at = time.monotonic()

    def exited(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def signal_group(self, signum: int) -> None:
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signum)

    def close_log(self) -> None:
        if self._log_file:
            self._log_file.close()

    def forget(self) -> None:
        """Its group is gone: nothing for `make stop` to find."""
        self.group_file.unlink(missing_ok=True)


def stop_orphans(folder: Path) -> list[str]:
    """Stops the process groups of components whose supervisor died without stopping them (killed
    with SIGKILL, say): a scheduler, triggerer or dag-processor ends when the database goes, but an
    API server keeps serving on its port. Each group file names a group the supervisor started; it
    is signalled only if a process of that group is still one of ours. The names of those stopped."""
    stopped = []
    for group_file in sorted(folder.glob("*.pgid")):
        with contextlib.suppress(ValueError, OSError):
            group = int(group_file.read_text())
            if _our_group_lives(group):
                os.killpg(group, signal.SIGTERM)
                deadline = time.monotonic() + STOP_GRACE_SECONDS
                while _our_group_lives(group) and time.monotonic() < deadline:
                    time.sleep(0.2)
                if _our_group_lives(group):
                    os.killpg(group, signal.SIGKILL)
                stopped.append(group_file.stem)
        group_file.unlink(missing_ok=True)
    return stopped


def _our_group_lives(group: int) -> bool:
    """Whether a process of process group `group` runs Airflow or one of ours, a component or the
    mail sink (not a stranger that was given the number since)."""
    for process in psutil.process_iter(["cmdline", "status"]):
        with contextlib.suppress(psutil.Error, OSError):
            if process.info["status"] != psutil.STATUS_ZOMBIE and os.getpgid(process.pid) == group:
                command = " ".join(process.info["cmdline"] or [])
                if any(mark in command for mark in ("airflow", "jobqueue", "devtools.")):
                    return True
    return False


# What each Airflow CLI group's `migrate` migrates, as the log says it.
MIGRATED_BY = {"db": "its metadata database", "fab-db": "the FAB auth manager's tables"}


class Stack:
    def __init__(self) -> None:
        self.data_dir = settings.data_dir()
        self.pid_file = self.data_dir / "stack.pid"
        self.log_dir = self.data_dir / "logs"
        self.cluster = (
            None
            if settings.external_database_url()
            else LocalCluster(self.data_dir / "pg", settings.pg_port(), durable=settings.pg_durable())
        )
        self.components: list[Component] = []
        self.stopping = False

    def _running_pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text())
            os.kill(pid, 0)
            return pid
        except (FileNotFoundError, ValueError, ProcessLookupError):
            return None

    def _refuse_if_running(self) -> None:
        if pid := self._running_pid():
            raise ConfigurationError(f"the stack already runs (pid {pid}); `make stop` stops it")

    def prepare(self) -> dict[str, str]:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(exist_ok=True)
        airflow_database_is_new = True
        if self.cluster:
            log(f"PostgreSQL: local cluster in {self.cluster.data_dir} on 127.0.0.1:{self.cluster.port}")
            self.cluster.start()
            self.cluster.create_database("worker")
            airflow_database_is_new = self.cluster.create_database("airflow")
        applied = migrations.apply_migrations(settings.job_database_url())
        log(f"migrations applied: {', '.join(applied) if applied else 'none needed'}")
        env = self.environment()
        self._migrate_airflow(env, airflow_database_is_new)
        if settings.auth_manager() == "fab":
            self._fab_admin(env)
        else:
            airflow_env.write_admin_password()
        return env

    def _migrate_airflow(self, env: dict[str, str], database_is_new: bool) -> None:
        """`airflow db migrate` (and FAB's), each unless the local cluster's database was migrated
        by that very version already: a restart then runs no Airflow CLI (about 4 s of CPU each),
        and turning FAB's auth manager on migrates FAB's tables only. A database we do not own
        (WORKER_DATABASE_URL) is always migrated: it may have been replaced behind our back."""
        mark = self.data_dir / "airflow-migrated"
        wanted = airflow_env.migrating_versions()
        owned = self.cluster and not database_is_new and mark.is_file()
        recorded = set(mark.read_text().split()) & set(wanted.values()) if owned else set()
        missing = [group for group, version in wanted.items() if version not in recorded]
        if not missing:
            log(f"Airflow: metadata database already migrated by {' '.join(wanted.values())}")
            return
        for group in missing:
            log(f"Airflow: migrating {MIGRATED_BY[group]}")
            self._airflow_cli(env, group, "migrate")
            recorded.add(wanted[group])
            if self.cluster:
                mark.write_text(" ".join(sorted(recorded)))

    def prepare_only(self) -> int:
        """`python -m devtools.stack prepare`: the data folder ready to run (databases created and
        migrated), nothing left running. The tests copy one such folder instead of preparing each stack."""
        self._refuse_if_running()
        try:
            self.prepare()
        finally:
            if self.cluster:
                self.cluster.stop()
        return 0

    def environment(self) -> dict[str, str]:
        """What every Airflow component (and the Airflow CLI) of the stack runs with."""
        env = {**os.environ, **airflow_env.airflow_environment()}
        # The job package for Airflow's components, the tooling for the mail sink, and the team's
        # own modules (its utils/, beside its tasks/).
        team = settings.project()
        env["PYTHONPATH"] = os.pathsep.join(
            p
            for p in (
                env["AIRFLOW__CORE__PLUGINS_FOLDER"],
                str(paths.PROJECT_ROOT),
                str(team.root) if team else None,
                os.environ.get("PYTHONPATH"),
            )
            if p
        )
        return env

    def _airflow_cli(self, env: dict[str, str], *args: str) -> str:
        """The Airflow CLI with the stack's settings; its output, also kept in the logs folder."""
        log_path = self.log_dir / f"airflow-{args[0]}.log"
        result = subprocess.run([self._airflow(), *args], env=env, capture_output=True, text=True)
        with log_path.open("a") as out:
            out.write(result.stdout + result.stderr)
        if result.returncode != 0:
            raise ConfigurationError(f"`airflow {' '.join(args[:2])}` failed; see {log_path}")
        return result.stdout + result.stderr

    def _fab_admin(self, env: dict[str, str]) -> None:
        """FAB's user `admin`, with the password the banner prints (created, or reset if it exists)."""
        password = airflow_env.admin_password()
        names = ["--firstname", "Admin", "--lastname", "User", "--email", "admin@localhost"]
        created = self._airflow_cli(
            env, "users", "create", "--username", "admin", "--password", password, "--role", "Admin", *names
        )
        if "already exist" in created:
            self._airflow_cli(env, "users", "reset-password", "--username", "admin", "--password", password)

    def airflow(self, args: list[str]) -> int:
        """`make airflow ARGS=...`: Airflow's CLI on this stack's settings (users, roles, DAGs)."""
        return subprocess.run([self._airflow(), *args], env=self.environment()).returncode

    @staticmethod
    def _airflow() -> str:
        return str(Path(sys.executable).parent / "airflow")

    @staticmethod
    def _component() -> list[str]:
        """An Airflow command through jobqueue/component.py (modules loaded first, Airflow's waits
        mended, a quick exit)."""
        return [sys.executable, "-m", "jobqueue.component"]

    def build_components(self, env: dict[str, str]) -> None:
        commands = {
            # Log servers bind every interface and cannot be moved to loopback: skip them. With
            # LocalExecutor the api-server reads task logs from the shared local folder.
            # The scheduler forks the LocalExecutor's task processes: it starts with their modules.
            "scheduler": [*self._component(), "scheduler", "--skip-serve-logs"],
            # The triggerer sends a trigger's event at once instead of at its next tick (wakeup.py).
            "triggerer": [*self._component(), "triggerer", "--skip-serve-logs"],
            # Parses the DAG files every 30 s: with the job modules loaded, each parse is cheap.
            "dag-processor": [*self._component(), "dag-processor"],
            # Nothing preloaded (it forks no task); its exit is component.py's (seconds less).
            "api-server": [*self._component(), "api-server"],
        }
        if settings.executor() == "CeleryExecutor":
            # Tasks run here, not in the scheduler: the same claims as on a worker on another host.
            commands["celery-worker"] = [*self._component(), "celery", "worker", "--skip-serve-logs"]
        if not settings.smtp_connection():
            mail_dir = self.data_dir / "mail"
            commands = {
                "mail-sink": [
                    sys.executable, "-m", "devtools.mailsink", str(mail_dir), str(settings.smtp_port())
                ],
                **commands,
            }  # fmt: skip
        self.components = [
            Component(name, command, env, self.log_dir / f"{name}.log", self.data_dir / f"{name}.pgid")
            for name, command in commands.items()
        ]

    def run(self) -> int:
        self._refuse_if_running()
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        self._stop_orphans()
        self.pid_file.write_text(str(os.getpid()))
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._request_stop)
        try:
            env = self.prepare()
            self.build_components(env)
            for component in self.components:
                log(f"starting {component.name} (log: {component.log_path})")
                component.start()
            self._wait_until_ready()
            self._supervise()
        finally:
            self.shutdown()
        return 0

    def _request_stop(self, signum: int, frame: object) -> None:
        self.stopping = True

    def _wait_until_ready(self) -> None:
        url = f"http://127.0.0.1:{settings.api_port()}/api/v2/monitor/health"
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while not self.stopping and time.monotonic() < deadline:
            self._restart_dead()
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        self._print_banner()
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(1)
        if not self.stopping:
            raise ConfigurationError(
                f"the API server did not answer {url} in {READY_TIMEOUT_SECONDS} s; "
                f"see {self.log_dir / 'api-server.log'}"
            )

    def _print_banner(self) -> None:
        lines = [
            "",
            "The stack is up.",
            f"  Airflow UI:   http://127.0.0.1:{settings.api_port()}/",
            f"  Job queue:    http://127.0.0.1:{settings.api_port()}/plugin/job-queue   (Browse > Job queue)",
            "  Login:        admin",
            f"  Password:     {airflow_env.admin_password()}",
            *self._other_users(),
            f"  Job database: {settings.job_database_url()}   (make psql)",
        ]
        if not settings.smtp_connection():
            lines.append(
                f"  Mail sink:    127.0.0.1:{settings.smtp_port()}, messages in {self.data_dir / 'mail'}"
            )
        if statsd := settings.statsd():
            lines.append(f"  Metrics:      StatsD at {statsd[0]}:{statsd[1]}, names airflow.jobqueue.*")
        lines += [f"  Logs:         {self.log_dir}", "Ctrl-C or `make stop` stops everything.", ""]
        print("\n".join(lines), flush=True)

    @staticmethod
    def _other_users() -> list[str]:
        if settings.auth_manager() == "fab":
            return ['  Other users:  FAB\'s: make airflow ARGS="users create --role Viewer ..."']
        others = [
            user
            for user in airflow_env.simple_auth_manager_users().split(",")
            if not user.startswith("admin:")
        ]
        if not others:
            return []
        named = ", ".join(f"{name} ({role})" for name, _, role in (user.partition(":") for user in others))
        return [f"  Other users:  {named}; their passwords in {airflow_env.passwords_file()}"]

    def _supervise(self) -> None:
        while not self.stopping:
            self._restart_dead()
            time.sleep(0.5)

    def _restart_dead(self) -> None:
        now = time.monotonic()
        for component in self.components:
            code = component.exited()
            if code is None or self.stopping:
                continue
            if component.next_start == 0.0:
                # Back off when a component keeps dying; a long healthy run resets the count.
                if now - component.started_at > 60:
                    component.restarts = 0
                delay = min(30.0, 2.0**component.restarts)
                component.restarts += 1
                component.next_start = now + delay
                log(f"{component.name} exited with code {code}; restarting in {delay:.0f} s")
            elif now >= component.next_start:
                component.signal_group(signal.SIGKILL)
                component.close_log()
                component.next_start = 0.0
                log(f"restarting {component.name}")
                component.start()

    def shutdown(self) -> None:
        self.stopping = True
        running = [c for c in self.components if c.process is not None]
        if running:
            log("stopping " + ", ".join(c.name for c in running))
        for component in running:
            component.signal_group(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for component in running:
            assert component.process is not None
            try:
                component.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log(f"{component.name} did not stop in {STOP_GRACE_SECONDS} s: killing it")
            # Children the component forked (executor workers, API workers) go with the group.
            component.signal_group(signal.SIGKILL)
            component.process.wait()
            component.close_log()
            component.forget()
        if self.cluster:
            self.cluster.stop()
            log("PostgreSQL stopped")
        if self.pid_file.exists() and self.pid_file.read_text().strip() == str(os.getpid()):
            self.pid_file.unlink()
        log("stopped")

    def _stop_orphans(self) -> None:
        if self.data_dir.is_dir():
            for name in stop_orphans(self.data_dir):
                log(f"stopped the {name} a supervisor that died had left running")

    def stop_other(self) -> int:
        """`make stop`: asks the running supervisor to stop, and waits for it."""
        pid = self._running_pid()
        if pid is None:
            log("the stack is not running")
        else:
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + STOP_GRACE_SECONDS + 30
            while self._running_pid() == pid and time.monotonic() < deadline:
                time.sleep(0.2)
            if self._running_pid() == pid:
                log(f"supervisor {pid} did not stop: killing it")
                os.kill(pid, signal.SIGKILL)
        if self._running_pid() is None:  # a supervisor killed before it could remove it
            self.pid_file.unlink(missing_ok=True)
        self._stop_orphans()
        if self.cluster and self.cluster.initialized() and self.cluster.running():
            self.cluster.stop()
            log("PostgreSQL stopped")
        return 0

    def psql(self) -> int:
        psql = shutil.which("psql")
        if psql is None:
            raise ConfigurationError("psql not found: install it with `apt-get install postgresql-client`")
        if self.cluster and not (self.cluster.initialized() and self.cluster.running()):
            raise ConfigurationError("the local PostgreSQL is not running: start the stack with `make run`")
        os.execv(psql, [psql, "-v", "ON_ERROR_STOP=1", settings.job_database_url()])


def main(argv: list[str]) -> int:
    commands = {"run": Stack.run, "prepare": Stack.prepare_only, "stop": Stack.stop_other, "psql": Stack.psql}
    if argv[:1] == ["airflow"]:
        return Stack().airflow(argv[1:])
    if len(argv) != 1 or argv[0] not in {*commands, "url"}:
        print(f"usage: python -m devtools.stack {{{'|'.join([*commands, 'url'])}}}", file=sys.stderr)
        return 2
    if argv[0] == "url":
        print(settings.job_database_url())
        return 0
    try:
        return commands[argv[0]](Stack())
    except WorkerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
