"""Start-up: ``mrt-engine --help`` and argument errors do not import what only commands need.

Each check runs in a fresh interpreter (``sys.modules`` of this test process is full already).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

# What only some commands need: HTTP, scheduling, templates, feeds, the store's ORM, config models.
HEAVY = ("httpx", "apscheduler", "jinja2", "feedparser", "peewee", "pydantic", "packaging")

PROBE = """
import json, sys
{code}
print(json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)))
"""


def heavy_modules_after(code: str) -> list[str]:
    """The heavy modules a fresh interpreter has imported after running ``code``."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(code=code, heavy=HEAVY)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_importing_the_command_line_imports_no_heavy_module():
    assert heavy_modules_after("import mrt_engine.cli") == []


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["status", "--help"],
        ["preview", "--help"],
        ["preview", "FINGERPRINT"],  # argparse: --channel is missing
        ["outbox", "--status", "nonsense"],  # refused by the command, before the store
        ["trace"],  # argparse: the ref is missing
        ["frobnicate"],  # argparse: no such command
        [],  # no command: the help
    ],
    ids=lambda argv: " ".join(argv) or "(none)",
)
def test_help_and_argument_errors_import_no_heavy_module(argv):
    code = (
        "import contextlib, io\n"
        "from mrt_engine import cli\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):\n"
        "    try:\n"
        f"        cli.main({argv!r})\n"
        "    except SystemExit:\n"
        "        pass\n"
    )
    assert heavy_modules_after(code) == []


@pytest.mark.parametrize(
    "argv",
    [
        ["status"],
        ["outbox", "--status", "dead"],
        ["trace", "deadbeef"],
        ["resend", "--dead"],
        ["cursor", "list"],
    ],
    ids=" ".join,
)
def test_a_command_given_only_a_store_imports_no_http_and_no_config_models(tmp_path, argv):
    from mrt_engine.store.db import open_store

    db = tmp_path / "state.sqlite3"
    open_store(db).close()
    code = (
        "import contextlib, io\n"
        "from mrt_engine import cli\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    cli.main({[*argv, '--db', str(db)]!r})\n"
    )
    assert heavy_modules_after(code) == ["peewee"]
