"""The console as a process in a real pseudo-terminal: however it ends (q, SIGTERM, or the
terminal hanging up as when an SSH session drops), the engine stops cleanly and the demo leaves
nothing behind."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pty
import select
import signal
import struct
import sys
import termios
import time
from pathlib import Path

import pytest


class Console:
    """``mrt-tui ARGS`` in a pseudo-terminal, its output drained so it never blocks."""

    def __init__(self, tmp_path: Path, *args: str) -> None:
        self.state = tmp_path / "state"
        self.tmp = tmp_path / "tmp"
        self.tmp.mkdir()
        env = {
            **os.environ,
            "TERM": "xterm-256color",
            "XDG_STATE_HOME": str(self.state),
            "MRT_TUI_SETTINGS": str(tmp_path / "tui.json"),
            "TMPDIR": str(self.tmp),  # where the demo makes its folder
        }
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: the console, its terminal the pty's other end
            os.execve(sys.executable, [sys.executable, "-m", "mrt_tui", *args], env)
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
        self.screen = b""
        self.status: int | None = None

    @property
    def log(self) -> str:
        path = self.state / "mrt" / "mrt-tui.log"
        return path.read_text() if path.exists() else ""

    def pump(self) -> None:
        """Read what the console drew (if its terminal is still open) and note its exit."""
        if self.fd is not None and select.select([self.fd], [], [], 0.1)[0]:
            with contextlib.suppress(OSError):  # EIO: the console closed its end
                self.screen += os.read(self.fd, 65536)
        if self.status is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = status
        else:
            time.sleep(0.1)

    def wait_for(self, predicate) -> None:
        while not predicate():
            assert self.status is None, f"the console ended early: {self.screen[-2000:]!r}"
            self.pump()

    def wait_exit(self) -> int:
        while self.status is None:
            self.pump()
        return os.waitstatus_to_exitcode(self.status)

    def hang_up(self) -> None:
        """Close the terminal's master side: the kernel sends SIGHUP, as when SSH drops."""
        os.close(self.fd)
        self.fd = None

    def close(self) -> None:
        if self.status is None:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        if self.fd is not None:
            os.close(self.fd)


@pytest.fixture
def console(tmp_path):
    consoles: list[Console] = []

    def start(*args: str) -> Console:
        consoles.append(Console(tmp_path, *args))
        return consoles[-1]

    yield start
    for c in consoles:
        c.close()


@pytest.mark.parametrize("ending", ["q", "SIGTERM", "SIGHUP"])
def test_the_demo_stops_its_engine_and_leaves_nothing_behind(console, ending):
    demo = console("--demo")
    # Running: the engine polls, and the console has drawn its Events view.
    demo.wait_for(lambda: "engine running" in demo.log and b"Events" in demo.screen)
    assert [p.name[:9] for p in demo.tmp.iterdir()] == ["mrt-demo-"]
    if ending == "q":
        os.write(demo.fd, b"q")
    elif ending == "SIGTERM":
        os.kill(demo.pid, signal.SIGTERM)
    else:
        demo.hang_up()
    code = demo.wait_exit()
    log = demo.log
    assert "engine stopping" in log and "engine stopped" in log, log[-3000:]
    assert "Traceback" not in log, log[-3000:]
    assert code == 0
    assert list(demo.tmp.rglob("*")) == []  # no demo folder, no store, no -wal / -shm


@pytest.mark.parametrize("ending", ["SIGTERM", "SIGHUP"])
def test_an_embedded_engine_closes_its_store_on_a_stop_signal(console, tmp_path, github, ending):
    github.add_issue("vllm-project/vllm", "[Model] Support DeepSeek-V3")
    store = tmp_path / "store" / "mrt.sqlite3"
    config = tmp_path / "mrt.json"
    config.write_text(
        json.dumps(
            {
                "poll_interval_seconds": 60,
                "state": {"sqlite_path": str(store)},
                "sources": {"github": {"repos": ["vllm-project/vllm"], "api_base": github.url}},
            }
        )
    )
    tui = console("--config", str(config))
    tui.wait_for(lambda: "engine running" in tui.log and b"Events" in tui.screen)
    tui.wait_for(lambda: store.with_name("mrt.sqlite3-wal").exists())  # open, in WAL mode
    if ending == "SIGTERM":
        os.kill(tui.pid, signal.SIGTERM)
    else:
        tui.hang_up()
    assert tui.wait_exit() == 0
    log = tui.log
    assert f"received {ending}" in log and "engine stopped" in log, log[-3000:]
    # The last connection closed cleanly: SQLite folded the WAL back and removed it.
    assert sorted(p.name for p in store.parent.iterdir()) == ["mrt.sqlite3", "mrt.sqlite3.lock"]
