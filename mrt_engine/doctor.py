"""``mrt-engine doctor``: can this deployment run? One line per check, each with a hint when it
fails, for an on-call engineer at 3 a.m.

Local checks: the config loads, every secret it names is set, the store opens and its schema is
current, disk space and a writable folder where the store lives, the clock against the store's
newest times, and whether an engine runs on the store. ``--network`` adds each source's API and
each channel's endpoint, and the clock against the upstreams' ``Date`` (see
:mod:`mrt_engine.doctor_network`); ``--send-test`` one test message to each channel.

Doctor changes nothing: the store is read through a read-only connection (an old schema is
reported, never migrated), the engine's lock only looked at, and secrets never shown (every
line goes through :func:`~mrt_engine.secrets.redact` as well).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from mrt_engine.secrets import redact
from mrt_engine.text import clean_line
from mrt_engine.timeutil import Clock, from_store, humanize_age, to_store, utcnow
from mrt_engine.wording import plural, size


@dataclass(frozen=True)
class Check:
    """The outcome of one check: what was found, and on failure what to do about it."""

    name: str
    ok: bool
    detail: str
    hint: str = ""
    subject: str = ""  # what a check of many is about: a source key, a channel's name


@dataclass(frozen=True)
class Limits:
    """Where doctor draws its lines."""

    min_free_bytes: int = 1_000_000_000  # free space under this (or under the ratio) fails
    min_free_ratio: float = 0.05
    # A clock behind the store's newest time, or off an upstream's Date, by more than this.
    clock_tolerance: timedelta = timedelta(minutes=5)


@dataclass
class Doctor:
    """Runs the checks on one config file and collects their outcomes."""

    path: Path
    environ: Mapping[str, str]
    network: bool = False
    send_test: bool = False
    clock: Clock = utcnow
    limits: Limits = field(default_factory=Limits)
    checks: list[Check] = field(default_factory=list)

    def add(self, name: str, ok: bool, detail: str, hint: str = "", subject: str = "") -> None:
        """Record one check's outcome."""
        # Belt and braces: no line leaves doctor holding a secret, whatever produced it; and
        # none a terminal escape (an upstream's error page, a value in the config).
        self.checks.append(Check(name, ok, _safe(detail), _safe(hint), _safe(subject)))

    def run(self) -> list[Check]:
        """Every check that applies, in order; a check that cannot run says why."""
        from mrt_engine.components import build_components
        from mrt_engine.config import ConfigError, load_config
        from mrt_engine.secrets import SecretResolver

        try:
            config = load_config(self.path)
        except ConfigError as exc:
            self.add("config", False, exc.report(), "fix it (`mrt-engine check` says the same)")
            return self.checks
        resolver = SecretResolver(self.environ)
        components = None
        try:
            components = build_components(config, self.environ, self.clock, resolver)
        except ConfigError as exc:
            if not resolver.errors:  # not a secret: the sources' keys clash
                self.add("config", False, exc.report(), "fix it (`mrt-engine check` too)")
                return self.checks
        try:
            self._local(config, resolver)
            if self.network or self.send_test:
                from mrt_engine import doctor_network

                if components is None:
                    self.add("network", False, "not checked: secrets are missing", "set them")
                else:
                    doctor_network.check(self, config, components)
        finally:
            for channel in components.channels.values() if components else ():
                channel.close()
        return self.checks

    def _local(self, config: Any, resolver: Any) -> None:
        self.add("config", True, str(config.path))
        self._secrets(config, resolver)
        location = config.store_location
        version = self._schema(location)
        if location.is_sqlite:
            self._disk(location.path)
        if version:
            self._store_clock(location)
        self._lock(location, config.scheduler.engine_lease_seconds, version)
        from mrt_engine.ai.settings import describe

        self.add("ai", *describe(config, self.environ))

    # ------------------------------------------------------------------ secrets
    def _secrets(self, config: Any, resolver: Any) -> None:
        problems = [*resolver.errors, *resolver.warnings]
        named = list(dict.fromkeys(resolver.named))
        password_env = config.state.password_env
        if password_env and config.store_location.is_postgresql:
            named.append(password_env)
            if not self.environ.get(password_env):
                problems.append(
                    f"state.password_env: environment variable {password_env} is not set"
                    " (the store's password)"
                )
        if problems:
            self.add(
                "secrets",
                False,
                "\n".join(problems),
                "set each variable in the engine's environment (its systemd EnvironmentFile);"
                " the config names the variable, never the value",
            )
        elif named:
            self.add("secrets", True, f"{plural(len(named), 'variable')} set: {', '.join(named)}")
        else:
            self.add("secrets", True, "the config names no secret")

    # ------------------------------------------------------------------ store
    def _schema(self, location: Any) -> int | None:
        """The schema check; the store's version (0: none yet; None: it cannot be read)."""
        from mrt_engine.store import schema
        from mrt_engine.store.db import StoreError

        if location.is_sqlite:
            try:
                location.path.stat()
            except (FileNotFoundError, NotADirectoryError):
                pass  # not created yet (a file in the way of its folder: "store writable")
            except OSError as exc:  # a folder this user may not enter, a name too long
                self.add(
                    "store",
                    False,
                    f"{location}: {exc.strerror or exc}",
                    "check state.sqlite_path, and that the engine's user may reach its folder",
                )
                return None
        if location.is_sqlite and not _exists(location.path):
            self.add(
                "store",
                True,
                f"{location}: not created yet (the first `mrt-engine run` creates it)",
            )
            return 0
        try:
            state = schema.inspect(location)
        except StoreError as exc:
            self.add("store", False, str(exc), _store_hint(str(exc)))
            return None
        if state.version == 0:
            self.add("store", True, f"{location}: no schema yet (the first run creates it)")
        elif state.pending:
            versions = ", ".join(f"{v} ({s})" for v, s in state.pending)
            self.add(
                "store",
                False,
                f"{location}: schema version {state.version}, this mrt-engine knows up to"
                f" {state.latest}: {plural(len(state.pending), 'migration')} pending: {versions}",
                "`mrt-engine migrate` applies them (so does the next `mrt-engine run`)",
            )
        else:
            self.add("store", True, f"{location}: schema version {state.version}, up to date")
        return state.version

    def _disk(self, path: Path) -> None:
        folder = path.parent
        while not _exists(folder) and folder != folder.parent:
            folder = folder.parent  # `run` creates the missing folders under it
        try:
            usage = shutil.disk_usage(folder)
        except OSError as exc:
            self.add("disk space", False, f"{folder}: {exc.strerror or exc}")
        else:
            ratio = usage.free / usage.total if usage.total else 0.0
            detail = f"{size(usage.free)} free of {size(usage.total)} ({ratio:.0%}) at {folder}"
            low = usage.free < self.limits.min_free_bytes or ratio < self.limits.min_free_ratio
            self.add(
                "disk space",
                not low,
                detail,
                f"under {size(self.limits.min_free_bytes)} or {self.limits.min_free_ratio:.0%}"
                " free: make room (`mrt-engine store prune`, `store vacuum`) or move the store"
                if low
                else "",
            )
        targets = [folder] + [p for p in (path,) if _exists(p)]
        denied = [str(p) for p in targets if not os.access(p, os.W_OK)]
        if not folder.is_dir():
            self.add(
                "store writable",
                False,
                f"{folder} is a file where the store's folder {path.parent} needs a folder",
                "move that file away, or point state.sqlite_path elsewhere",
            )
        elif denied:
            self.add(
                "store writable",
                False,
                f"not writable by this user: {', '.join(denied)}",
                "the engine writes the store, its -wal, -shm and lock files there: run it as"
                " the user that owns them, or give that user write access",
            )
        else:
            self.add("store writable", True, f"{path if _exists(path) else folder}")

    def _store_clock(self, location: Any) -> None:
        now = self.clock()
        try:
            newest = _newest_times(location)
        except Exception as exc:
            self.add("clock", False, f"cannot read the store's times: {exc}")
            return
        if not newest:
            self.add("clock", True, f"{now:%Y-%m-%d %H:%M:%S}Z (nothing stored yet to compare)")
            return
        what, at = max(newest.items(), key=lambda item: item[1])
        behind = at - now
        if behind > self.limits.clock_tolerance:
            self.add(
                "clock",
                False,
                f"the system clock ({now:%Y-%m-%d %H:%M:%S}Z) is {_span(behind)} behind the"
                f" store's {what} ({at:%Y-%m-%d %H:%M:%S}Z)",
                "set the clock right (NTP: `timedatectl status`); cursors, backoffs and silences"
                " go by it",
            )
        else:
            self.add(
                "clock",
                True,
                f"{now:%Y-%m-%d %H:%M:%S}Z; the store's {what} {humanize_age(at, now)}",
            )

    def _lock(self, location: Any, lease_seconds: float, version: int | None) -> None:
        if location.is_sqlite:
            try:
                self.add("engine", True, _lock_holder(location.path))
            except OSError as exc:  # cannot tell: not a pass
                lock = location.path.with_name(location.path.name + ".lock")
                self.add(
                    "engine",
                    False,
                    f"cannot read the lock file {lock}: {exc.strerror or exc}",
                    "run doctor as the engine's user",
                )
            return
        if version is None:  # its engines are rows of the store: not "none" when unread
            self.add("engine", False, "cannot tell: the store cannot be read (see above)")
            return
        if version < 4:  # no engine_instance table yet
            self.add("engine", True, "no engine has run on this store yet")
            return
        since = self.clock() - timedelta(seconds=lease_seconds)
        try:
            with _read_only(location) as read:
                rows = read(
                    "SELECT id, host, pid, heartbeat_at FROM engine_instance"
                    " WHERE stopped_at IS NULL AND heartbeat_at > ? ORDER BY heartbeat_at DESC",
                    (to_store(since),),
                )
        except Exception as exc:
            self.add("engine", False, f"cannot read the store's engines: {exc}")
            return
        if not rows:
            self.add("engine", True, "no engine is running on this store")
            return
        live = "; ".join(f"{r[0]} (pid {r[2]} on {r[1]})" for r in rows)
        self.add("engine", True, f"{plural(len(rows), 'engine')} running: {live}")


def _exists(path: Path) -> bool:
    """Whether ``path`` exists; False too where the system cannot look it up (a folder this
    user may not enter, a name too long), which ``Path.exists`` raises instead."""
    try:
        path.stat()
    except OSError:
        return False
    return True


def _safe(text: str) -> str:
    """``text`` with secrets redacted and control characters gone, its lines kept."""
    return "\n".join(clean_line(line) for line in redact(text).splitlines())


def _store_hint(message: str) -> str:
    if "knows versions up to" in message:
        return "upgrade mrt-engine to the version that wrote this store"
    if "password" in message:
        return "set the variable state.password_env names"
    return "check state.sqlite_path / state.url, and that the store is reachable"


def _span(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds >= 3600:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    return f"{seconds // 60} min {seconds % 60} s"


# ---------------------------------------------------------------------- reading the store
@contextmanager
def _read_only(location: Any) -> Iterator[Any]:
    """``read(sql, params) -> rows`` on a connection that cannot change the store: SQLite
    opened read-only (immutable when no WAL file is there, as
    :func:`mrt_engine.store.schema.inspect` does: no -wal or -shm file is left behind),
    PostgreSQL in read-only transactions. Statements use ``?`` marks."""
    if location.is_postgresql:
        from mrt_engine.store import postgres

        # Added to the URL's own options (a search_path, say), not in their place.
        options = f"{location.params.get('options', '')} -c default_transaction_read_only=on"
        conn = postgres.connect_raw(location, options=options.strip())
        try:
            yield lambda sql, params=(): conn.execute(postgres.qmark_sql(sql), params).fetchall()
        finally:
            conn.close()
        return
    path = location.path
    wal = path.with_name(path.name + "-wal").exists()
    mode = "mode=ro" if wal else "mode=ro&immutable=1"
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?{mode}", uri=True, timeout=15)
    try:
        yield lambda sql, params=(): conn.execute(sql, params).fetchall()
    finally:
        conn.close()


# The store's newest times, each found by an index (the newest row of a table is its last id).
_NEWEST = {
    "last poll": "SELECT MAX(last_poll_at) FROM source_state",
    "newest event": "SELECT observed_at FROM event ORDER BY id DESC LIMIT 1",
    "newest poll record": "SELECT finished_at FROM poll_metric ORDER BY id DESC LIMIT 1",
}


def _newest_times(location: Any) -> dict[str, datetime]:
    found: dict[str, datetime] = {}
    with _read_only(location) as read:
        for what, sql in _NEWEST.items():
            rows = read(sql)
            value = rows[0][0] if rows else None
            at = value if isinstance(value, datetime) else from_store(value)
            if at is not None:
                found[what] = at
    return found


def _lock_holder(db_path: Path) -> str:
    """Who holds the engine's lock on a SQLite store, looked at without taking it for longer
    than a shared probe (and without writing the lock file, as taking it would); OSError when
    the lock file cannot be read."""
    lock = db_path.with_name(db_path.name + ".lock")
    try:
        fd = os.open(lock, os.O_RDONLY)
    except FileNotFoundError:
        return "no engine is running on this store (none has yet)"
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            from mrt_engine.store.lock import EngineLock

            # What the engine itself says of its holder (nothing when the file is damaged).
            return f"an engine is running on this store{EngineLock._describe_holder(fd)}"
        fcntl.flock(fd, fcntl.LOCK_UN)
        return "no engine is running on this store"
    finally:
        os.close(fd)


# ---------------------------------------------------------------------- the report
def marks(stream: TextIO) -> tuple[str, str]:
    """✓ and ✗, or ``ok`` and ``FAIL`` where the stream's encoding cannot write them."""
    encoding = getattr(stream, "encoding", None) or "utf-8"  # a StringIO holds any text
    try:
        "✓✗".encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return "ok", "FAIL"
    return "✓", "✗"


def _coloured(stream: TextIO, environ: Mapping[str, str]) -> bool:
    """Colour only on a terminal, and never with ``NO_COLOR`` set (https://no-color.org)."""
    isatty = getattr(stream, "isatty", None)
    return bool(
        isatty and isatty() and not environ.get("NO_COLOR") and environ.get("TERM") != "dumb"
    )


def report(
    checks: list[Check], stream: TextIO, environ: Mapping[str, str], *, as_json: bool
) -> None:
    """Print ``checks``: one line each (more for a detail of several lines), a hint under each
    failure; or one JSON object."""
    ok = all(c.ok for c in checks)
    good, bad = marks(stream)
    if as_json:
        data = {"ok": ok, "checks": [asdict(c) for c in checks]}
        # \u escapes where the stream cannot write the text itself (an ASCII terminal).
        stream.write(json.dumps(data, indent=2, ensure_ascii=good != "✓") + "\n")
        return
    colour = _coloured(stream, environ)
    encoding = getattr(stream, "encoding", None) or "utf-8"

    def write(line: str) -> None:
        # What the terminal's encoding cannot show (a "…" on an ASCII terminal) becomes "?".
        stream.write(line.encode(encoding, "replace").decode(encoding) + "\n")

    width = max(len(good), len(bad))
    name_width = max((len(c.name) for c in checks), default=0)
    for c in checks:
        mark = (good if c.ok else bad).ljust(width)
        if colour:
            mark = f"\x1b[{32 if c.ok else 31}m{mark}\x1b[0m"
        first, *rest = c.detail.splitlines() or [""]
        if c.subject:
            first = f"{c.subject}: {first}"
        write(f"{mark} {c.name:<{name_width}}  {first}")
        indent = " " * (width + name_width + 3)
        for line in rest:
            write(f"{indent}{line.strip()}")
        if not c.ok and c.hint:
            write(f"{indent}hint: {c.hint}")
    failed = sum(not c.ok for c in checks)
    write("all checks passed" if ok else f"{plural(failed, 'check')} failed")
