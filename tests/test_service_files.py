"""Running it for real: the systemd unit and the cron example in config/ are what they say
(systemd-analyze verifies the unit; the cron line, with its paths moved here, runs the engine
once against the simulators with the secrets from its environment file)."""

from __future__ import annotations

import configparser
import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import FAST, GH_TOKEN, deep_merge

from mrt_engine import cli

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "config" / "systemd" / "mrt-engine.service"
CRON = ROOT / "config" / "cron" / "mrt-engine"
ENGINE = Path(sys.executable).with_name("mrt-engine")  # this checkout's, installed editable


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=True, interpolation=None)
    parser.optionxform = str  # systemd's keys are case-sensitive
    parser.read_string(UNIT.read_text())
    return parser


def engine_args(command: str, binary: str) -> list[str]:
    """The arguments of the mrt-engine command in a shell command line (or in the script of
    an ``sh -c`` in it)."""
    words = shlex.split(command)
    if binary in words:
        return words[words.index(binary) + 1 :]
    [script] = [w for w in words if binary in w]
    return engine_args(script, binary)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_the_systemd_unit_passes_systemd_analyze_verify(tmp_path):
    # The unit as shipped, but starting this checkout's engine (verify checks the binary).
    text = UNIT.read_text().replace("/opt/mrt/bin/mrt-engine", str(ENGINE))
    copy = tmp_path / "mrt-engine.service"
    copy.write_text(text)
    result = subprocess.run(
        ["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, timeout=120
    )
    # verify exits 0 on an unknown key or a bad value, but says so on stderr.
    about_it = [line for line in result.stderr.splitlines() if "mrt-engine" in line]
    assert result.returncode == 0 and about_it == [], result.stderr


def test_the_unit_runs_the_daemon_as_a_hardened_notify_service():
    service = unit()["Service"]
    assert service["Type"] == "notify" and service["Restart"] == "on-failure"
    assert service["User"] == "mrt" and service["StateDirectory"] == "mrt"
    assert service["EnvironmentFile"] == "/etc/mrt/secrets.env"
    assert service["NoNewPrivileges"] == "yes" and service["ProtectSystem"] == "strict"
    assert "/var/lib/mrt" in service["ReadWritePaths"].split()
    assert service["WorkingDirectory"] == "/var/lib/mrt"
    args = cli.build_parser().parse_args(
        engine_args(service["ExecStart"], "/opt/mrt/bin/mrt-engine")
    )
    assert args.command == "run" and not args.once and args.config == "/etc/mrt/config.toml"


def test_the_cron_example_runs_the_engine_once_with_the_secrets_file(tmp_path, github, welink):
    [line] = [
        line
        for line in CRON.read_text().splitlines()
        if line.strip() and not line.startswith("#") and "=" not in line.split()[0]
    ]
    fields = line.split(None, 6)
    assert fields[:5] == ["*/5", "*", "*", "*", "*"] and fields[5] == "mrt"
    command = fields[6]
    args = cli.build_parser().parse_args(engine_args(command, "/opt/mrt/bin/mrt-engine"))
    assert args.command == "run" and args.once and args.log_level == "warning"
    # The same line, its /etc/mrt and /var/lib/mrt moved here, run as cron would run it.
    etc, state = tmp_path / "etc", tmp_path / "state"
    etc.mkdir()
    state.mkdir()
    github.add_issue("vllm-project/vllm", "seed")
    config = deep_merge(
        FAST,
        {
            "watch_keywords": ["deepseek"],
            "sources": {
                "github": {
                    "repos": ["vllm-project/vllm"],
                    "token_env": "GH",
                    "api_base": github.url,
                }
            },
            "notify": {"welink": {"webhook_env": "WL"}},
            "state": {"sqlite_path": str(state / "mrt.sqlite3")},
        },
    )
    (etc / "config.json").write_text(json.dumps(config))
    # Single-quoted, as the cron file says: the webhook URL holds an "&".
    (etc / "secrets.env").write_text(f"GH='{GH_TOKEN}'\nWL='{welink.webhook_url}'\n")
    moved = (
        command.replace("/opt/mrt/bin/mrt-engine", str(ENGINE))
        .replace("/etc/mrt/config.toml", str(etc / "config.json"))
        .replace("/etc/mrt", str(etc))
        .replace("/var/lib/mrt", str(state))
    )
    result = subprocess.run(
        ["/bin/sh", "-c", moved],
        env={"PATH": "/usr/local/bin:/usr/bin:/bin"},  # cron's: nothing of this test's
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and result.stderr == ""  # nothing to mail when all is well
    assert github.requests_to("/repos/vllm-project/vllm/issues")
    assert (state / "mrt.sqlite3").exists()
