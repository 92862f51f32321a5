"""A throwaway PostgreSQL cluster for the tests: ``initdb`` + ``pg_ctl`` on 127.0.0.1.

The test run's first process starts it (``start``) and ends it (``stop``); every test that
needs a database makes its own from a template (``new_database``) and drops it afterwards. The
cluster asks a password over TCP (scram-sha-256), so the store's password really comes from the
environment variable ``state.password_env`` names.

Debian's ``postgresql`` package provides the programs (``.ci/run`` installs it when missing).
``initdb`` refuses to run as root: as root the cluster runs as the ``postgres`` user.
Without PostgreSQL the PostgreSQL cases are skipped with the reason — except in CI
(``MRT_REQUIRE_POSTGRESQL=1``), where that is a failure.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

USER = "mrt"
PASSWORD = "mrt-test-password"
PASSWORD_ENV = "MRT_TEST_PG_PASSWORD"
ENV = "MRT_TEST_POSTGRESQL"  # host:port of the running cluster, for the test processes
REQUIRE_ENV = "MRT_REQUIRE_POSTGRESQL"


class Unavailable(Exception):
    """PostgreSQL cannot be run here; the message says why."""


@dataclass
class Cluster:
    folder: Path
    port: int
    bindir: Path
    as_postgres: bool

    @property
    def host(self) -> str:
        return "127.0.0.1"


def bindir() -> Path:
    """Where initdb and pg_ctl are (Debian keeps them out of PATH)."""
    found = shutil.which("pg_ctl")
    if found:
        return Path(os.path.realpath(found)).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=_version)
    if versions:
        return Path(versions[-1]).parent
    raise Unavailable("PostgreSQL is not installed (apt-get install postgresql)")


def _version(path: str) -> int:
    try:
        return int(Path(path).parent.parent.name.split(".")[0])
    except ValueError:
        return 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(cluster: Cluster, *argv: str, timeout: float = 60) -> None:
    cmd = [str(cluster.bindir / argv[0]), *argv[1:]]
    if cluster.as_postgres:
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise Unavailable(f"{argv[0]} failed: {(done.stderr or done.stdout).strip()[-400:]}")


def start() -> Cluster:
    """Create and start a cluster in a new temporary folder."""
    programs = bindir()
    as_postgres = os.geteuid() == 0
    folder = Path(tempfile.mkdtemp(prefix="mrt-pg-"))
    cluster = Cluster(folder, _free_port(), programs, as_postgres)
    pwfile = folder / "pw"
    pwfile.write_text(PASSWORD + "\n")
    if as_postgres:
        shutil.chown(folder, "postgres")
        shutil.chown(pwfile, "postgres")
    data = folder / "data"
    _run(
        cluster,
        "initdb",
        "-D",
        str(data),
        "-U",
        USER,
        "--pwfile",
        str(pwfile),
        "--auth-host=scram-sha-256",
        "--auth-local=scram-sha-256",
        "-E",
        "UTF8",
        "--locale=C",
        "--no-sync",
    )
    options = (
        f"-p {cluster.port} -c listen_addresses=127.0.0.1 -k {folder}"
        # a test cluster: speed over durability (the crash tests kill our processes, not it)
        " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        " -c max_connections=300"
    )
    _run(
        cluster, "pg_ctl", "-D", str(data), "-o", options, "-l", str(folder / "log"), "-w", "start"
    )
    return cluster


def stop(cluster: Cluster) -> None:
    with contextlib.suppress(Unavailable):
        _run(cluster, "pg_ctl", "-D", str(cluster.folder / "data"), "-m", "immediate", "stop")
    shutil.rmtree(cluster.folder, ignore_errors=True)


def admin_connect(address: str, dbname: str = "postgres"):
    import psycopg

    host, port = address.rsplit(":", 1)
    return psycopg.connect(
        host=host, port=int(port), user=USER, password=PASSWORD, dbname=dbname, autocommit=True
    )


_counter = 0


def new_database(address: str, prefix: str = "t") -> str:
    """A new, empty database's URL (no password in it: it is in PASSWORD_ENV)."""
    global _counter
    _counter += 1
    name = f"{prefix}_{os.getpid()}_{_counter}_{int(time.time() * 1000) % 100000}"
    with admin_connect(address) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"postgresql://{USER}@{address}/{name}"


def drop_database(address: str, url: str) -> None:
    name = url.rsplit("/", 1)[1]
    with admin_connect(address) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
