"""One engine per store: an advisory lock file next to the database.

The kernel drops the lock when the process dies, even by SIGKILL, so a restarted engine never
waits for a stale lock; a second engine started while one runs is refused with who holds it.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

from mrt_engine.store.db import StoreError, os_problem
from mrt_engine.timeutil import to_store, utcnow
from mrt_engine.untrusted_json import parse_json


class EngineAlreadyRunning(Exception):
    """Another engine holds the store."""


class EngineLock:
    """An exclusive, non-blocking ``flock`` on ``<store>.lock``."""

    def __init__(self, db_path: Path) -> None:
        self.path = db_path.with_name(db_path.name + ".lock")
        self._fd: int | None = None

    def _open(self) -> int:
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StoreError(
                f"cannot create the engine's lock file {self.path}: {os_problem(exc)}"
                " (the store's folder must be writable)"
            ) from None

    def probe(self) -> None:
        """Create (or open) the lock file without taking the lock: what ``acquire`` would hit."""
        os.close(self._open())

    def acquire(self) -> None:
        fd = self._open()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._describe_holder(fd)
            os.close(fd)
            raise EngineAlreadyRunning(
                f"another mrt-engine is already running on {self.path.with_suffix('')}"
                f"{holder}; stop it first, or use `mrt-tui --attach` to watch it"
            ) from None
        info = json.dumps({"pid": os.getpid(), "started": to_store(utcnow())})
        os.ftruncate(fd, 0)
        os.pwrite(fd, info.encode(), 0)
        self._fd = fd

    @staticmethod
    def _describe_holder(fd: int) -> str:
        try:
            info = parse_json(os.pread(fd, 4096, 0) or b"{}")
        except (OSError, ValueError):
            return ""
        if not isinstance(info, dict) or not info.get("pid"):  # damaged, or not ours
            return ""
        return f" (pid {info['pid']}, started {info.get('started', '?')})"

    def release(self) -> None:
        if self._fd is not None:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            finally:
                os.close(self._fd)
                self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None
