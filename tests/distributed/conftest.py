"""Fixtures for the tests that span processes: a throwaway PostgreSQL cluster on 127.0.0.1, and the
energy demo data prepared once and copied into each test's own folder.

The PostgreSQL server is the real one (initdb, pg_ctl, postgres), never a mock: the Optuna test must
meet the same locking, connection and heartbeat behaviour as a study shared across machines. The
binaries come from PATH or Debian's `postgresql` package (/usr/lib/postgresql/<version>/bin, not on
PATH); CI installs that package (.ci/run). Missing binaries fail the test, they never skip it: a
skipped fault-tolerance test would read as a passing one.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.distributed.helpers import REPO, cli_env, pipeline

# ---- PostgreSQL ---------------------------------------------------------------------------------


def postgres_binaries() -> Path:
    """The folder holding initdb and pg_ctl: PATH first, then the newest Debian versioned folder."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl", path=str(Path(found).parent)):
        return Path(found).parent
    debian = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if debian:
        return Path(debian[-1]).parent
    pytest.fail(
        "PostgreSQL server binaries (initdb, pg_ctl) are missing: not on PATH nor under "
        "/usr/lib/postgresql/<version>/bin. Install them (Debian: apt-get install postgresql); "
        ".ci/run does this on CI."
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Postgres:
    port: int
    user: str = "postgres"  # the cluster's superuser (initdb -U), whatever OS user runs the server

    def url(self, database: str = "postgres") -> str:
        """A libpq URL (psycopg2.connect takes it; tune.storage too, components.tune.rdb_url adds the driver)."""
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        import psycopg2

        connection = psycopg2.connect(host="127.0.0.1", port=self.port, user=self.user, dbname="postgres")
        connection.autocommit = True  # CREATE DATABASE refuses to run inside a transaction
        try:
            with connection.cursor() as cursor:
                cursor.execute(f'CREATE DATABASE "{name}"')
        finally:
            connection.close()
        return self.url(name)


def as_unprivileged(command: list[str], user: pwd.struct_passwd | None) -> list[str]:
    """`command` run as `user` (postgres refuses to run as root); unchanged when we are not root."""
    if user is None:
        return command
    if shutil.which("runuser"):
        return ["runuser", "-u", user.pw_name, "--", *command]
    return ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups", "--", *command]


@pytest.fixture(scope="session")
def postgres():
    """A fresh PostgreSQL cluster on 127.0.0.1:<free port>, trust auth from 127.0.0.1 only; removed afterwards."""
    bin_dir = postgres_binaries()
    user = None
    if os.geteuid() == 0:  # the `postgres` account where the package made one, else the account owning nothing
        names = {p.pw_name: p for p in pwd.getpwall()}
        user = names.get("postgres") or names["nobody"]
    # under /tmp, not pytest's tmp_path: root's pytest folders are 0700, unreadable to the server's user
    root = Path(tempfile.mkdtemp(prefix="scifolio-pg-"))
    data, log = root / "data", root / "server.log"
    if user is not None:
        os.chown(root, user.pw_uid, user.pw_gid)
    port = free_port()

    def run(*command: str) -> None:
        proc = subprocess.run(as_unprivileged(list(command), user), capture_output=True, text=True, timeout=60)
        if proc.returncode != 0:
            server_log = log.read_text()[-2000:] if log.exists() else ""
            pytest.fail(f"{' '.join(command)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}\n{server_log}")

    try:
        # --no-sync and fsync=off: a throwaway cluster needs no durability, and fsync costs seconds per commit burst
        run(str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8")
        # replace the generated rules: TCP from 127.0.0.1 only (no unix socket, no other host)
        (data / "pg_hba.conf").write_text("host all all 127.0.0.1/32 trust\n")
        options = f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories='' -c fsync=off"
        run(str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "30", "-o", options, "start")
        yield Postgres(port)
    finally:
        if (data / "postmaster.pid").exists():  # immediate: nothing in it is worth a clean shutdown
            subprocess.run(
                as_unprivileged([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"], user),
                capture_output=True,
                timeout=60,
            )
        shutil.rmtree(root, ignore_errors=True)


# ---- the energy demo data, prepared once ---------------------------------------------------------


@pytest.fixture(scope="session")
def energy_prepared(tmp_path_factory) -> Path:
    """A folder holding data/energy/{raw,validated,prepared} and mlflow.db for the shrunk demo (one process)."""
    work = tmp_path_factory.mktemp("energy-prepared")
    command = pipeline(work, "all", "--skip", "tune", "--skip", "train", "--skip", "evaluate", "--skip", "register")
    proc = subprocess.run(command, cwd=REPO, env=cli_env(work), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"preparing the demo failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return work


@pytest.fixture
def energy_copy(energy_prepared, tmp_path):
    """copy(name) -> a private copy of the prepared work folder (data + an already-migrated MLflow store)."""

    def copy(name: str) -> Path:
        return Path(shutil.copytree(energy_prepared, tmp_path / name))

    return copy
