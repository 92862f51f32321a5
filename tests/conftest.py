"""Shared fixtures: local upstream simulators, a real SMTP server, configs, engine runs."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pg_cluster
import pytest

from mrt_engine.config import load_config
from mrt_engine.engine import Engine
from mrt_engine.simulators.github import GitHubSimulator
from mrt_engine.simulators.huggingface import HuggingFaceSimulator
from mrt_engine.simulators.modelscope import ModelScopeSimulator
from mrt_engine.simulators.welink import WeLinkSimulator
from mrt_engine.store.db import Store, open_store

BACKENDS = ("sqlite", "postgresql")


# ---------------------------------------------------------------------- store backends
# The suites marked ``both_backends`` (pytestmark in the module) run every test on SQLite and
# on PostgreSQL: their trackers and stores take the ``backend`` fixture. One PostgreSQL cluster
# serves the whole run: the first process starts it (before xdist starts its workers, which
# inherit its address in the environment) and stops it at the end.
_cluster: pg_cluster.Cluster | None = None


def pytest_configure(config: pytest.Config) -> None:
    global _cluster
    config.addinivalue_line(
        "markers", "both_backends: run the module's tests on SQLite and on PostgreSQL"
    )
    config.addinivalue_line(
        "markers", "sqlite_only(why): in a both_backends module, a test of SQLite's own file"
    )
    config.addinivalue_line(
        "markers", "postgresql_only: in a both_backends module, a test of PostgreSQL's own part"
    )
    if hasattr(config, "workerinput") or os.environ.get(pg_cluster.ENV):
        return  # an xdist worker, or a cluster given from outside
    try:
        _cluster = pg_cluster.start()
    except pg_cluster.Unavailable as exc:
        os.environ[pg_cluster.ENV] = "unavailable: " + str(exc)
        return
    os.environ[pg_cluster.ENV] = f"{_cluster.host}:{_cluster.port}"


def pytest_unconfigure(config: pytest.Config) -> None:
    global _cluster
    if _cluster is not None:
        pg_cluster.stop(_cluster)
        _cluster = None
        os.environ.pop(pg_cluster.ENV, None)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames and metafunc.definition.get_closest_marker(
        "both_backends"
    ):
        # MRT_BACKENDS=sqlite: .ci/run's lower-bounds pass runs the both-backend suites once,
        # on SQLite (PostgreSQL's own tests still run: the driver's lower bound is theirs).
        chosen = os.environ.get("MRT_BACKENDS")
        backends = tuple(b for b in BACKENDS if b in chosen.split(",")) if chosen else BACKENDS
        if metafunc.definition.get_closest_marker("sqlite_only"):
            backends = ("sqlite",)
        elif metafunc.definition.get_closest_marker("postgresql_only"):
            backends = ("postgresql",)
        metafunc.parametrize("backend", backends, indirect=True)


def postgresql_address() -> str:
    """host:port of the test cluster; skips (or, in CI, fails) when there is none."""
    found = os.environ.get(pg_cluster.ENV, "")
    if found and not found.startswith("unavailable"):
        return found
    reason = found.removeprefix("unavailable: ") or "no PostgreSQL cluster was started"
    if os.environ.get(pg_cluster.REQUIRE_ENV):
        pytest.fail(f"PostgreSQL is required here ({pg_cluster.REQUIRE_ENV}): {reason}")
    pytest.skip(f"PostgreSQL is not available: {reason}")


def recent_t0() -> datetime:
    """Five minutes ago, to the second: when a test's upstream items start."""
    return datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)


@pytest.fixture(autouse=True)
def _fresh_t0(request):
    """A module that dates its upstream items from a module-level ``T0`` taken from the clock
    (``T0_FROM_NOW = True``) gets it fresh for each test: taken once at import, it fell behind the
    engine's 10-minute baseline margin when the test ran ~9 minutes into a long suite, and the
    items counted as history. (Modules with a fixed ``T0`` keep it.)"""
    module = request.module
    if module is not None and getattr(module, "T0_FROM_NOW", False):
        module.T0 = recent_t0()


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    """The store backend of this test: SQLite unless the module runs on both."""
    return getattr(request, "param", "sqlite")


@pytest.fixture
def store_state(backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict]:
    """The config's ``state`` section for this test's store (a new database on PostgreSQL,
    its password in the environment as a deployment would have it)."""
    if backend == "sqlite":
        yield {"sqlite_path": str(tmp_path / "mrt.sqlite3")}
        return
    address = postgresql_address()
    url = pg_cluster.new_database(address)
    monkeypatch.setenv(pg_cluster.PASSWORD_ENV, pg_cluster.PASSWORD)
    try:
        yield {"url": url, "password_env": pg_cluster.PASSWORD_ENV}
    finally:
        pg_cluster.drop_database(address, url)


@pytest.fixture
def store_location(store_state: dict, tmp_path: Path) -> Any:
    """Where this test's store is (a StoreLocation)."""
    from mrt_engine.store.location import parse_location

    if "url" in store_state:
        return parse_location(store_state["url"], password_env=store_state["password_env"])
    return parse_location(Path(store_state["sqlite_path"]))


GH_TOKEN = "ghp_TESTTOKEN0123456789abcdef"
WL_TOKEN = "wltok-SECRET-9f8e7d6c5b4a"


@pytest.fixture
def github() -> Iterator[GitHubSimulator]:
    sim = GitHubSimulator(token=GH_TOKEN).start()
    yield sim
    sim.stop()


@pytest.fixture
def welink() -> Iterator[WeLinkSimulator]:
    sim = WeLinkSimulator(token=WL_TOKEN).start()
    yield sim
    sim.stop()


@pytest.fixture
def hf() -> Iterator[HuggingFaceSimulator]:
    sim = HuggingFaceSimulator(token="hf_TESTTOKEN").start()
    yield sim
    sim.stop()


@pytest.fixture
def modelscope() -> Iterator[ModelScopeSimulator]:
    sim = ModelScopeSimulator().start()
    yield sim
    sim.stop()


# ---------------------------------------------------------------------- SMTP
def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class SmtpServer:
    host: str
    port: int
    messages: list[Any] = field(default_factory=list)
    logins: list[tuple[str, str]] = field(default_factory=list)
    ca_file: str = ""
    fail_next: list[tuple[int, str]] = field(default_factory=list)


@pytest.fixture(scope="session")
def tls_ca(tmp_path_factory: pytest.TempPathFactory) -> Any:
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    folder = tmp_path_factory.mktemp("tls")
    ca_file = folder / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    chain = folder / "server.pem"
    key = folder / "server.key"
    cert.private_key_pem.write_to_path(str(key))
    with open(chain, "wb") as f:
        for blob in cert.cert_chain_pems:
            f.write(blob.bytes())
    return {"ca_file": str(ca_file), "cert": str(chain), "key": str(key)}


def _smtp(tls_ca: dict[str, str], *, implicit_tls: bool) -> Iterator[SmtpServer]:
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tls_ca["cert"], tls_ca["key"])
    server = SmtpServer("127.0.0.1", 0, ca_file=tls_ca["ca_file"])

    class Handler:
        async def handle_RCPT(self, srv, session, envelope, address, rcpt_options):
            if server.fail_next:
                code, text = server.fail_next.pop(0)
                return f"{code} {text}"
            envelope.rcpt_tos.append(address)
            return "250 OK"

        async def handle_DATA(self, srv, session, envelope):
            server.messages.append(envelope)
            return "250 2.0.0 Ok: queued as MRT123"

    def authenticator(srv, session, envelope, mechanism, auth_data):
        # handled=False: aiosmtpd then answers a refusal with 535 (RFC 4954); by default it
        # answers nothing and the client waits for its timeout.
        if isinstance(auth_data, LoginPassword):
            server.logins.append((auth_data.login.decode(), auth_data.password.decode()))
            return AuthResult(success=auth_data.password == b"smtp-pass-123", handled=False)
        return AuthResult(success=False, handled=False)

    kwargs: dict[str, Any] = {
        "hostname": "127.0.0.1",
        "port": free_port(),
        "authenticator": authenticator,
        "auth_require_tls": True,
    }
    if implicit_tls:
        kwargs["ssl_context"] = context
        # aiosmtpd does not see implicit TLS as TLS for AUTH (aio-libs/aiosmtpd#281).
        kwargs["auth_require_tls"] = False
    else:
        kwargs["tls_context"] = context
        kwargs["require_starttls"] = True
    controller = Controller(Handler(), **kwargs)
    controller.start()
    server.port = controller.port
    yield server
    controller.stop()


@pytest.fixture
def smtp(tls_ca: dict[str, str]) -> Iterator[SmtpServer]:
    yield from _smtp(tls_ca, implicit_tls=False)


@pytest.fixture
def smtps(tls_ca: dict[str, str]) -> Iterator[SmtpServer]:
    yield from _smtp(tls_ca, implicit_tls=True)


# ---------------------------------------------------------------------- configs and runs
def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


FAST = {
    "delivery": {
        "backoff_initial_seconds": 0.05,
        "backoff_max_seconds": 0.2,
        "request_timeout_seconds": 5,
        # Every alert its own message at once: tests of grouping set their own times.
        "group_wait_seconds": 0,
        "group_interval_seconds": 0,
    },
    "http": {
        "retry_initial_seconds": 0.01,
        "retry_max_seconds": 0.05,
        "hosts": {"127.0.0.1": {"min_interval_seconds": 0}},
    },
}


@dataclass
class Tracker:
    """A config on disk plus the environment it runs with."""

    path: Path
    env: dict[str, str]
    # Commands run in this process (see ``cli``); a test about process isolation sets False.
    in_process: bool = True

    @property
    def config(self) -> Any:
        return load_config(self.path)

    @property
    def db(self) -> Path:
        """The SQLite file (a test that reads the file itself is a SQLite test)."""
        return self.config.db_path

    @property
    def location(self) -> Any:
        return self.config.store_location

    @property
    def is_postgresql(self) -> bool:
        return self.location.is_postgresql

    def engine(self, *, later: float = 0.0) -> Engine:
        """An engine on this config; with ``later``, its clock runs that many seconds ahead."""
        if not later:
            return Engine(self.config, environ=self.env)
        return Engine(
            self.config,
            environ=self.env,
            clock=lambda: datetime.now(UTC) + timedelta(seconds=later),
        )

    def once(self, *, later: float = 0.0) -> int:
        """``run --once``; with ``later``, as if that many seconds had passed (a retry or a sweep
        that is due after a wait, without sleeping through it)."""
        return self.engine(later=later).run_once()

    @contextmanager
    def store(self) -> Iterator[Store]:
        store = open_store(self.location)
        try:
            yield store
        finally:
            store.close()

    def sql(self, query: str, *params: Any) -> list[tuple]:
        """Rows of ``query`` (``?`` marks) on either backend."""
        with self.store() as store:
            cursor = store.db.execute_sql(query, params)
            return list(cursor.fetchall()) if cursor.description is not None else []

    def baselines(self) -> int:
        """How many sources have committed their baseline (0 while there is no store yet).

        Read-only and without :func:`open_store` (no migration, no process-wide binding), so a
        test can wait on it while an engine in another process creates and writes the store.
        """
        import sqlite3
        from contextlib import closing

        query = "SELECT COUNT(*) FROM source_state WHERE baseline_done = 1"
        if self.is_postgresql:
            import psycopg

            try:  # the password is in the environment (store_state puts it there)
                with psycopg.connect(**self.location.connect_params(), connect_timeout=5) as conn:
                    return conn.execute(query).fetchone()[0]
            except psycopg.Error:
                return 0
        try:
            with closing(sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=5)) as db:
                return db.execute(query).fetchone()[0]
        except sqlite3.Error:
            return 0

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """``mrt-engine ARGS --config PATH`` in its own process (or, with ``in_process``, in this
        one: the same code, without the half second a Python start costs)."""
        split = 2 if args and args[0] in ("cursor", "source") else len(args)
        argv = [*args[:split], "--config", str(self.path), *args[split:]]
        if self.in_process and args and (args[0] != "run" or "--once" in args):
            return _cli_in_process(argv, self.env)
        return subprocess.run(
            [sys.executable, "-m", "mrt_engine", *argv],
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            timeout=timeout,
        )


def _cli_in_process(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run ``mrt_engine.cli.main`` here with the tracker's environment, capturing what it prints.

    The daemon (``run`` without ``--once``) is never run this way: it takes the process's
    signals. ``run --once`` configures logging for the whole process, so the logging setup is
    put back afterwards. Only what a separate process would show is captured: stdout, stderr
    (where ``run`` logs), and otherwise log records of WARNING and above (Python prints those to
    stderr when logging is not configured).
    """
    import io
    import logging
    from contextlib import redirect_stderr, redirect_stdout

    from mrt_engine import cli

    out, err = io.StringIO(), io.StringIO()
    root = logging.getLogger()
    saved_logging = (list(root.handlers), root.level)
    saved_levels = {name: logging.getLogger(name).level for name in logging.root.manager.loggerDict}
    unconfigured = logging.StreamHandler(err)
    unconfigured.setLevel(logging.WARNING)
    root.addHandler(unconfigured)
    saved_env = dict(os.environ)
    os.environ.update(env)
    try:
        with redirect_stdout(out), redirect_stderr(err):
            try:
                code = cli.main(argv)
            except SystemExit as exc:  # argparse: usage errors and --help
                code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
        root.handlers[:] = saved_logging[0]
        root.setLevel(saved_logging[1])
        for name, level in saved_levels.items():
            logging.getLogger(name).setLevel(level)
    return subprocess.CompletedProcess(argv, code, out.getvalue(), err.getvalue())


@pytest.fixture
def make_tracker(tmp_path: Path, store_state: dict):
    """``make_tracker(config_dict, env)``: write a JSON config (merged over fast test defaults),
    its store on the test's backend."""

    def make(
        config: dict[str, Any], env: dict[str, str] | None = None, *, fast: bool = True
    ) -> Tracker:
        data = deep_merge(FAST, config) if fast else config
        data.setdefault("state", dict(store_state))
        env = dict(env or {})
        if "password_env" in data["state"]:
            env.setdefault(pg_cluster.PASSWORD_ENV, pg_cluster.PASSWORD)
        path = tmp_path / "config.json"
        path.write_text(json.dumps(data, indent=2))
        return Tracker(path, env)

    return make


@pytest.fixture
def gh_tracker(make_tracker, github: GitHubSimulator, welink: WeLinkSimulator):
    """A tracker watching one simulated repo for DeepSeek/Qwen, alerting to simulated WeLink."""

    def make(extra: dict[str, Any] | None = None) -> Tracker:
        config = {
            "watch_keywords": ["deepseek", "qwen"],
            "sources": {
                "github": {
                    "repos": ["vllm-project/vllm"],
                    "token_env": "GH",
                    "api_base": github.url,
                }
            },
            "notify": {"welink": {"webhook_env": "WL"}},
        }
        return make_tracker(
            deep_merge(config, extra or {}), {"GH": GH_TOKEN, "WL": welink.webhook_url}
        )

    return make


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.05) -> bool:
    """Poll ``predicate`` until true or ``timeout``; returns its last value."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


@pytest.fixture(autouse=True)
def _no_store_left_open() -> Iterator[None]:
    """Each test must close what it opens: the store binding is process-wide."""
    yield
    from mrt_engine.store import db

    if db._current is not None:
        leaked = db._current.path
        db._current.close()
        pytest.fail(f"a store was left open: {leaked}")


@pytest.fixture
def store_statements() -> Iterator[list[tuple[str, tuple]]]:
    """Every statement run through the store's Peewee database, from any thread, as (sql,
    params): Peewee logs each one at DEBUG on its ``peewee`` logger (every version we support)."""
    import logging

    statements: list[tuple[str, tuple]] = []

    class Record(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            sql, params = record.msg if isinstance(record.msg, tuple) else (record.msg, ())
            statements.append((str(sql), tuple(params or ())))

    logger = logging.getLogger("peewee")
    handler, saved = Record(logging.DEBUG), (logger.level, logger.propagate)
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False  # not into the captured log of every test
    yield statements
    logger.removeHandler(handler)
    logger.level, logger.propagate = saved


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In .ci/run's lower-bounds run (MRT_LOWER_BOUNDS set), skip the snapshot comparisons: the
    pictures are drawn with the newest Textual, and older ones draw the same screens with other
    colours, borders and spacing. Every console behaviour is still tested there (test_tui.py)."""
    if not os.environ.get("MRT_LOWER_BOUNDS"):
        return
    skip = pytest.mark.skip(
        reason="lower-bounds run: snapshots are pictures drawn by the newest Textual"
    )
    for item in items:
        if "snap_compare" in getattr(item, "fixturenames", ()):
            item.add_marker(skip)


__all__ = ["GH_TOKEN", "WL_TOKEN", "Tracker", "deep_merge", "threading", "wait_until"]
