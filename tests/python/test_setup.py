"""Set-up helpers that must explain themselves when something is missing."""

from __future__ import annotations

import json

import pytest

from devtools import airflow_env
from devtools.localpg import find_bin_dir
from jobqueue import settings
from jobqueue.exceptions import ConfigurationError


def test_missing_postgresql_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.delenv("WORKER_PG_BIN", raising=False)
    with pytest.raises(ConfigurationError, match=r"apt-get install postgresql"):
        find_bin_dir(debian_root=tmp_path, path=str(tmp_path))


def test_pg_bin_override_is_used(tmp_path, monkeypatch):
    for name in ("initdb", "pg_ctl"):
        (tmp_path / name).write_text("")
    monkeypatch.setenv("WORKER_PG_BIN", str(tmp_path))
    assert find_bin_dir(debian_root=tmp_path / "none", path="") == tmp_path


def test_bad_port_is_named(monkeypatch):
    monkeypatch.setenv("WORKER_PG_PORT", "five")
    with pytest.raises(ConfigurationError, match="WORKER_PG_PORT must be a whole number, got 'five'"):
        settings.pg_port()


def test_database_urls(monkeypatch):
    monkeypatch.delenv("WORKER_DATABASE_URL", raising=False)
    monkeypatch.delenv("WORKER_AIRFLOW_DATABASE_URL", raising=False)
    monkeypatch.setenv("WORKER_PG_PORT", "6000")
    assert settings.job_database_url() == "postgresql://postgres@127.0.0.1:6000/worker"
    assert settings.airflow_database_url() == "postgresql://postgres@127.0.0.1:6000/airflow"
    monkeypatch.setenv("WORKER_DATABASE_URL", "postgresql://app@db/app")
    assert settings.job_database_url() == settings.airflow_database_url() == "postgresql://app@db/app"


def test_admin_password_from_environment_or_kept(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKER_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("AIRFLOW_ADMIN_PASSWORD", "chosen")
    assert airflow_env.admin_password() == "chosen"
    monkeypatch.delenv("AIRFLOW_ADMIN_PASSWORD")
    generated = airflow_env.admin_password()
    assert len(generated) >= 20
    assert airflow_env.admin_password() == generated
    assert (tmp_path / "airflow" / "admin-password").stat().st_mode & 0o077 == 0


def test_airflow_settings_stay_on_loopback(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKER_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("AIRFLOW_API_PORT", "9999")
    env = airflow_env.airflow_environment()
    assert env["AIRFLOW__API__HOST"] == "127.0.0.1"
    assert env["AIRFLOW__API__BASE_URL"] == "http://127.0.0.1:9999"
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:9999/execution/"
    assert len(env["AIRFLOW__API_AUTH__JWT_SECRET"]) >= 64


@pytest.mark.parametrize(
    ("given", "applied"),
    [
        (None, "admin:admin"),
        ("ana:user, vic:viewer", "admin:admin,ana:user,vic:viewer"),
        ("admin:op,ana:user", "admin:op,ana:user"),
    ],
    ids=["none", "colleagues", "own-admin"],
)
def test_make_run_keeps_airflow_s_own_users_and_adds_its_admin(monkeypatch, given, applied):
    if given is None:
        monkeypatch.delenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", raising=False)
    else:
        monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", given)
    assert airflow_env.simple_auth_manager_users() == applied
    assert airflow_env.airflow_environment()["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] == applied


def test_the_admin_s_password_is_written_beside_the_generated_ones(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKER_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("AIRFLOW_ADMIN_PASSWORD", "secret")
    airflow_env.passwords_file().parent.mkdir(parents=True)
    airflow_env.passwords_file().write_text('{"vic": "generated-by-airflow", "admin": "old"}\n')
    airflow_env.write_admin_password()
    assert json.loads(airflow_env.passwords_file().read_text()) == {
        "vic": "generated-by-airflow",
        "admin": "secret",
    }
