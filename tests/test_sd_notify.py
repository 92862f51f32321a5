"""``mrt-engine run`` under systemd (sd_notify(3)): READY=1 once the engine is up, STATUS=
lines, WATCHDOG=1 pings when the unit has a watchdog, STOPPING=1 at shutdown; nothing at all
without NOTIFY_SOCKET. A real engine process sends to a real AF_UNIX datagram socket here."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import wait_until

from mrt_engine.sd_notify import SystemdNotifier, watchdog_seconds
from mrt_engine.simulators.base import Fault

REPO = "vllm-project/vllm"


@contextmanager
def notify_socket(abstract: bool) -> Iterator[tuple[socket.socket, str]]:
    """A datagram socket systemd would listen on, and the NOTIFY_SOCKET value naming it."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    folder = None
    try:
        if abstract:
            name = f"mrt-test-{secrets.token_hex(6)}"
            sock.bind(b"\0" + name.encode())
            value = f"@{name}"
        else:  # a short folder: socket paths end at 108 bytes, and pytest's tmp_path is long
            folder = tempfile.mkdtemp(prefix="mrt-sd-")
            value = os.path.join(folder, "notify")
            sock.bind(value)
        sock.settimeout(30)
        yield sock, value
    finally:
        sock.close()
        if folder is not None:
            for entry in Path(folder).iterdir():
                entry.unlink()
            os.rmdir(folder)


def receive_until(sock: socket.socket, wanted: str) -> list[str]:
    """Every message received up to and including the one holding line ``wanted``."""
    messages = []
    while True:
        message = sock.recv(4096).decode()
        messages.append(message)
        if wanted in message.split("\n"):
            return messages


def start_engine(tracker, extra_env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "mrt_engine", "run", "--config", str(tracker.path)],
        env={**os.environ, **tracker.env, **extra_env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("abstract", [False, True], ids=["path", "abstract"])
def test_the_daemon_tells_systemd_it_is_ready_alive_and_stopping(
    gh_tracker, github, welink, abstract
):
    github.add_issue(REPO, "seed")
    tracker = gh_tracker({"sources": {"github": {"poll_interval_seconds": 3600}}})
    with notify_socket(abstract) as (sock, address):
        process = start_engine(tracker, {"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "400000"})
        try:
            before = receive_until(sock, "READY=1")
            # Ready means up: the store is open (its sources' state rows are there).
            assert tracker.sql("SELECT COUNT(*) FROM source_state") == [(2,)]
            assert "STATUS=opening the store" in before
            ready = before[-1].split("\n")
            assert "STATUS=polling 2 sources" in ready
            # The watchdog (0.4 s) is pinged every half interval or so, from the main loop.
            pings = [receive_until(sock, "WATCHDOG=1") for _ in range(3)]
            assert all(p == ["WATCHDOG=1"] for p in pings)
        finally:
            process.send_signal(signal.SIGTERM)
            _out, err = process.communicate(timeout=30)
        after = receive_until(sock, "STOPPING=1")
    assert process.returncode == 0, err
    assert "STATUS=stopping" in after[-1].split("\n")
    assert "engine stopped" in err


def test_without_notify_socket_nothing_is_sent_and_nothing_fails(gh_tracker, github, welink):
    github.add_issue(REPO, "seed")
    tracker = gh_tracker({"sources": {"github": {"poll_interval_seconds": 3600}}})
    with notify_socket(abstract=False) as (sock, _address):
        sock.settimeout(0.5)
        env = {"WATCHDOG_USEC": "400000"}
        process = start_engine(tracker, env)
        try:
            assert wait_for_baselines(tracker)
        finally:
            process.send_signal(signal.SIGTERM)
            _out, err = process.communicate(timeout=30)
        with pytest.raises(TimeoutError):
            sock.recv(4096)
    assert process.returncode == 0, err
    assert "Traceback" not in err and "service manager" not in err
    assert SystemdNotifier({}).ready("up") is False


def wait_for_baselines(tracker) -> bool:
    return wait_until(lambda: tracker.baselines() == 2, 30)


def test_a_notify_socket_nobody_listens_on_is_no_error(tmp_path):
    notifier = SystemdNotifier({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    assert notifier.enabled and notifier.ready("up") is False  # sent nowhere, raised nothing
    assert SystemdNotifier({"NOTIFY_SOCKET": "vsock:2:1234"}).enabled is False


def test_the_watchdog_is_only_this_process_s_when_watchdog_pid_says_so():
    assert watchdog_seconds({"WATCHDOG_USEC": "2000000"}) == 2.0
    assert watchdog_seconds({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())}) == 2.0
    assert watchdog_seconds({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"}) is None
    assert watchdog_seconds({"WATCHDOG_USEC": "0"}) is None
    assert watchdog_seconds({}) is None


def test_systemctl_status_names_a_stale_source_until_it_works_again(gh_tracker, github, welink):
    github.add_issue(REPO, "seed")
    tracker = gh_tracker(
        {
            "sources": {"github": {"poll_interval_seconds": 1, "monitor": {"pulls": False}}},
            "scheduler": {
                "stale_after_intervals": 2,
                "stale_after_min_seconds": 0,
                "unhealthy_after_failures": 1000,
                "max_backoff_seconds": 1,
            },
            "http": {"max_retries": 0},
        }
    )
    assert tracker.once() == 0  # the baseline
    github.inject(Fault(502, "bad gateway", path="/repos/", times=100_000))
    with notify_socket(abstract=True) as (sock, address):
        process = start_engine(tracker, {"NOTIFY_SOCKET": address})
        try:
            receive_until(sock, "READY=1")
            receive_until(sock, f"STATUS=polling 1 source; stale: github:{REPO}:issues")
            github.clear_faults()
            receive_until(sock, "STATUS=polling 1 source")
        finally:
            process.send_signal(signal.SIGTERM)
            _out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err


def test_an_unchanged_status_is_not_sent_again(tmp_path):
    with notify_socket(abstract=False) as (sock, address):
        notifier = SystemdNotifier({"NOTIFY_SOCKET": address})
        assert notifier.ready("polling 2 sources")
        assert not notifier.status("polling 2 sources")
        assert notifier.status("polling 2 sources; stale: a")
        assert [sock.recv(4096).decode() for _ in range(2)] == [
            "READY=1\nSTATUS=polling 2 sources",
            "STATUS=polling 2 sources; stale: a",
        ]
