"""The command line: shared options on either side of the subcommand, the v0 form, usage errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from mrt_engine import cli
from mrt_engine.store.db import open_store


@pytest.fixture
def stored(make_tracker):
    """A config whose store exists (no sources: the commands read an empty store)."""
    tracker = make_tracker({})
    open_store(tracker.db).close()
    return tracker


def run(capsys, *argv: str) -> tuple[int, str, str]:
    """In-process, for commands that do not configure logging (``run`` does: see :func:`engine`)."""
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def engine(tracker, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mrt_engine", *argv],
        env={**os.environ, **tracker.env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    "command",
    [
        ["status"],
        ["status", "--json"],
        ["outbox", "--json"],
        ["cursor", "list", "--json"],
        ["export", "--source", "none:x"],
        ["diff", "--source", "none:x", "--since", "1d", "--json"],
    ],
    ids=" ".join,
)
@pytest.mark.parametrize("flag", ["--config", "-c"])
def test_the_config_option_works_before_and_after_the_subcommand(capsys, stored, command, flag):
    after = run(capsys, *command, flag, str(stored.path))
    before = run(capsys, flag, str(stored.path), *command)
    assert before == after
    assert "invalid choice" not in before[2]


def test_check_takes_the_config_before_the_subcommand(capsys, stored):
    code, out, err = run(capsys, "--config", str(stored.path), "check")
    assert (code, err) == (0, "") and f"config OK: {stored.path}" in out


def test_db_and_json_work_before_the_subcommand(capsys, stored):
    code, out, _ = run(capsys, "--db", str(stored.db), "--json", "status")
    assert code == 0 and json.loads(out) == json.loads(
        run(capsys, "status", "--db", str(stored.db), "--json")[1]
    )
    # Between a command group and its subcommand too.
    code, out, _ = run(capsys, "cursor", "--db", str(stored.db), "--json", "list")
    assert code == 0 and json.loads(out) == []


def test_an_option_given_on_both_sides_takes_the_one_after_the_subcommand(capsys, stored, tmp_path):
    code, _, err = run(
        capsys, "--config", str(tmp_path / "nope.json"), "status", "--config", str(stored.path)
    )
    assert (code, err) == (0, "")


def test_log_options_before_run(stored):
    result = engine(stored, "--log-format", "json", "-c", str(stored.path), "run", "--once")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stderr.splitlines()[0])["msg"]


@pytest.mark.parametrize(
    ("argv", "problem"),
    [
        (["--json", "run", "--once"], "--json does not apply to run"),
        (["--db", "x.sqlite3", "check"], "--db does not apply to check"),
        (["--log-level", "debug", "status"], "--log-level does not apply to status"),
        (["--json", "cursor", "reset", "k", "--initial"], "--json does not apply to cursor reset"),
    ],
)
def test_an_option_before_a_subcommand_that_does_not_take_it_is_a_usage_error(
    capsys, stored, argv, problem
):
    with pytest.raises(SystemExit) as info:
        cli.main([*argv, "--config", str(stored.path)])
    assert info.value.code == 2 and problem in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["--config", "{}", "--once"], ["--once", "-c", "{}"]])
def test_the_v0_form_still_runs_once(stored, argv):
    result = engine(stored, *(str(stored.path) if a == "{}" else a for a in argv))
    assert result.returncode == 0, result.stderr
