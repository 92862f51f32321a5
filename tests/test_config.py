"""Config: the v0 JSON keeps working, TOML is the same schema, errors name the key path."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, get_args, get_origin

import pytest
from pydantic import BaseModel

from mrt_engine import cli
from mrt_engine.components import build_components
from mrt_engine.config import ConfigError, key_path, load_config, root_model, validate

ROOT = Path(__file__).resolve().parent.parent
WEBHOOK = "https://open.welink.huaweicloud.com/api/werobot/v1/webhook/send?token=tok-abcdef123456&channel=standard"


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mrt_engine", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def test_v0_example_loads_unchanged():
    config = load_config(ROOT / "config" / "v0-example.json")
    assert config.poll_interval_seconds == 300
    assert config.watch_keywords == ["deepseek", "qwen"]
    assert set(config.source_sections()) == {"github", "huggingface", "modelscope"}
    components = build_components(config, {"WELINK_WEBHOOK_URL": WEBHOOK})
    assert [s.key for s in components.sources] == [
        "github:vllm-project/vllm:issues",
        "github:vllm-project/vllm:pulls",
        "github:sgl-project/sglang:issues",
        "github:sgl-project/sglang:pulls",
        "huggingface:deepseek-ai:models",
        "modelscope:deepseek-ai:models",
    ]
    assert list(components.channels) == ["welink"]
    assert components.sources[0].api_base == "https://api.github.com"
    assert any("GITHUB_TOKEN is not set" in w for w in components.warnings)


def test_full_toml_example_loads():
    config = load_config(ROOT / "config" / "example.toml")
    assert [r.name for r in config.rules] == ["deepseek-qwen-support", "new-models", "quiet-docs"]
    assert config.delivery.max_attempts == 10
    assert config.db_path == (ROOT / "config" / "mrt_state.sqlite3").resolve()


def test_toml_and_json_are_the_same_schema(tmp_path):
    data = json.loads((ROOT / "config" / "v0-example.json").read_text())
    toml = """
poll_interval_seconds = 300
watch_keywords = ["deepseek", "qwen"]
[state]
sqlite_path = "./mrt_state.sqlite3"
[sources.github]
repos = ["vllm-project/vllm", "sgl-project/sglang"]
monitor = { issues = true, pulls = true }
token_env = "GITHUB_TOKEN"
[sources.huggingface]
orgs = ["deepseek-ai"]
token_env = "HF_TOKEN"
[sources.modelscope]
orgs = ["deepseek-ai"]
[notify.welink]
webhook_env = "WELINK_WEBHOOK_URL"
is_at = false
is_at_all = false
at_accounts = []
"""
    path = tmp_path / "same.toml"
    path.write_text(toml)
    assert load_config(path).model == validate(data).model


def test_delivery_defaults_and_new_keys():
    config = validate(
        {
            "delivery": {"workers": 3, "request_timeout_seconds": 7},
            "sources": {
                "github": {
                    "repos": ["a/b"],
                    "api_base": "https://ghe.example.com/api/v3",
                    "poll_interval_seconds": 1,
                }
            },
        }
    )
    assert (
        config.delivery.max_attempts,
        config.delivery.backoff_initial_seconds,
        config.delivery.backoff_max_seconds,
    ) == (10, 5, 3600)
    assert config.delivery.workers == 3
    assert config.source_sections()["github"].api_base == "https://ghe.example.com/api/v3"


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (
            {"sources": {"github": {"repos": ["a/b", "vllm"]}}},
            'sources.github.repos[1]: expected "owner/repo", got "vllm"',
        ),
        (
            {"sources": {"github": {"repo": ["a/b"]}}},
            'sources.github.repo: unknown key (did you mean "repos"?)',
        ),
        ({"sources": {"github": {}}}, "sources.github.repos: required key is missing"),
        ({"poll_interval_seconds": 0.5}, "poll_interval_seconds: must be >= 1, got 0.5"),
        (
            {"sources": {"github": {"repos": ["a/b"], "poll_interval_seconds": 0}}},
            "sources.github.poll_interval_seconds: must be >= 1, got 0",
        ),
        ({"delivery": {"workers": "many"}}, 'delivery.workers: expected an integer, got "many"'),
        ({"delivery": {"max_attempts": 0}}, "delivery.max_attempts: must be >= 1, got 0"),
        (
            {"notify": {"welink": {"at_accounts": ["u"] * 11}}},
            "notify.welink.at_accounts: WeLink accepts at most 10 accounts, got 11",
        ),
        (
            {"notify": {"welink": {"is_at": True}}},
            "notify.welink: is_at is true but at_accounts is empty (WeLink requires both)",
        ),
        (
            {"notify": {"email": {"smtp_host": "h", "to_list": ["not-an-address"]}}},
            "notify.email.to_list: not an e-mail address: 'not-an-address'",
        ),
        (
            {"sources": {"github": {"repos": ["a/b"], "api_base": "ftp://x"}}},
            'sources.github.api_base: expected an http(s) URL, got "ftp://x"',
        ),
        ({"sources": {"slack": {}}}, "sources.slack: unknown key"),
        ({"log": {"format": "xml"}}, "log.format: expected one of 'text' or 'json', got \"xml\""),
    ],
)
def test_invalid_config_names_the_key_path(data, problem):
    with pytest.raises(ConfigError) as info:
        validate(data)
    assert problem in info.value.problems


def test_invalid_config_exits_2_with_the_message_and_no_traceback(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"sources": {"github": {"repos": ["vllm-project/vllm", "vllm"]}}}))
    result = run_cli("run", "--config", str(path), "--once")
    assert result.returncode == 2
    assert 'sources.github.repos[1]: expected "owner/repo", got "vllm"' in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("broken.json", '{"sources": {', "JSON syntax error at line 1, column 14"),
        ("broken.toml", "[sources\nx = 1", "TOML syntax error"),
        ("list.json", "[1, 2]", "the top level must be an object"),
    ],
)
def test_unparseable_config_is_a_clear_error(tmp_path, name, text, message):
    path = tmp_path / name
    path.write_text(text)
    result = run_cli("check", "--config", str(path))
    assert result.returncode == 2 and message in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_config_file_is_a_clear_error(tmp_path):
    result = run_cli("run", "--once", "--config", str(tmp_path / "nope.json"))
    assert result.returncode == 2 and "file not found" in result.stderr


def test_missing_required_secret_is_an_error_and_optional_one_a_warning(tmp_path):
    config = validate(
        {
            "sources": {"github": {"repos": ["a/b"], "token_env": "MY_GH"}},
            "notify": {"welink": {"webhook_env": "MY_HOOK"}},
        }
    )
    with pytest.raises(ConfigError) as info:
        build_components(config, {})
    assert info.value.problems == [
        "notify.welink.webhook_env: environment variable MY_HOOK is not set "
        "(the WeLink group robot webhook URL with token and channel)"
    ]
    components = build_components(config, {"MY_HOOK": WEBHOOK})
    assert components.warnings[0].startswith(
        "sources.github.token_env: environment variable MY_GH is not set"
    )


@pytest.mark.parametrize(
    "section, key, pasted",
    [
        ("notify", "welink", "https://open.welink.example/send?token=PASTEDsecret123&channel=s"),
        ("sources", "github", "ghp_PASTEDsecret0123456789abcdefABCDEF"),
        ("sources", "huggingface", "hf_PASTEDsecretAbCdEfGhIjKlMnOpQrStUv"),
    ],
)
def test_a_secret_pasted_where_its_variable_name_belongs_is_never_echoed(
    tmp_path, section, key, pasted
):
    """The usual first-hour slip: the token itself in ``*_env``. check says what to do and
    never prints the value (it would land in a terminal, a CI log, the daemon's log)."""
    name = "webhook_env" if key == "welink" else "token_env"
    settings = {name: pasted, **({"repos": ["a/b"]} if key == "github" else {})}
    if key == "huggingface":
        settings["orgs"] = ["Qwen"]
    data = {section: {key: settings}}
    if section == "sources":
        data["notify"] = {"welink": {"webhook_env": "HOOK"}}
    path = tmp_path / "c.json"
    path.write_text(json.dumps(data))
    result = run_cli("check", "--config", str(path), env={"HOOK": WEBHOOK, "PATH": "/usr/bin:/bin"})
    assert "PASTEDsecret" not in result.stdout + result.stderr
    assert f"{section}.{key}.{name}: " in result.stdout + result.stderr
    assert "the name of an environment variable" in result.stdout + result.stderr


def test_check_shows_webhook_redacted(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"notify": {"welink": {}}}))
    result = run_cli(
        "check", "--config", str(path), env={"WELINK_WEBHOOK_URL": WEBHOOK, "PATH": "/usr/bin:/bin"}
    )
    assert result.returncode == 0, result.stderr
    assert "token=***&channel=standard" in result.stdout
    assert "tok-abcdef123456" not in result.stdout + result.stderr


def test_relative_store_path_is_taken_from_the_config_directory(tmp_path):
    folder = tmp_path / "etc"
    folder.mkdir()
    path = folder / "c.json"
    path.write_text(json.dumps({"state": {"sqlite_path": "data/state.sqlite3"}}))
    assert load_config(path).db_path == folder / "data" / "state.sqlite3"


# ---------------------------------------------------------------------- numbers and durations
def _number_fields(model: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """The key path of every float in the schema (sections in lists or tables: their first item)."""
    for name, info in model.model_fields.items():
        yield from _number_paths(info.annotation, (*prefix, name))


def _number_paths(annotation: Any, path: tuple[Any, ...]) -> Iterator[tuple[Any, ...]]:
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        yield from _number_paths(args[0], path)
    elif annotation is float:
        yield path
    elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield from _number_fields(annotation, path)
    elif origin is list:
        yield from _number_paths(args[0], (*path, 0))
    elif origin is dict:
        yield from _number_paths(args[1], (*path, "example.com"))
    else:  # a union: X | None, str | Model
        seen: set[tuple[Any, ...]] = set()
        for arg in args:
            for found in _number_paths(arg, path):
                if found not in seen:
                    seen.add(found)
                    yield found


def _nested(path: tuple[Any, ...], value: Any) -> Any:
    for part in reversed(path):
        value = [value] if isinstance(part, int) else {part: value}
    return value


NUMBER_PATHS = list(_number_fields(root_model()))


def test_the_schema_walk_finds_the_durations_of_sources_and_channels():
    paths = {key_path(p) for p in NUMBER_PATHS}
    assert {
        "poll_interval_seconds",
        "delivery.lease_seconds",
        "http.hosts.example.com.min_interval_seconds",
        "sources.huggingface.sweep_interval_seconds",
        "sources.feeds[0].poll_interval_seconds",
        "notify.email.timeout_seconds",
    } <= paths


@pytest.mark.parametrize("value", [1e308, 1e20, math.inf, -math.inf, math.nan])
@pytest.mark.parametrize("path", NUMBER_PATHS, ids=key_path)
def test_every_number_of_the_config_is_finite_and_bounded(path, value):
    with pytest.raises(ConfigError) as info:
        validate(_nested(path, value))
    assert any(p.startswith(f"{key_path(path)}: ") for p in info.value.problems), (
        info.value.problems
    )


@pytest.mark.parametrize(
    ("toml", "problem"),
    [
        ("poll_interval_seconds = 1e308", "poll_interval_seconds: must be <= 2592000 (30 days)"),
        ("poll_interval_seconds = 1e20", "poll_interval_seconds: must be <= 2592000 (30 days)"),
        ("poll_interval_seconds = inf", "poll_interval_seconds: must be a finite number, got inf"),
        ("poll_interval_seconds = nan", "poll_interval_seconds: must be a finite number, got nan"),
        (
            '[sources.github]\nrepos = ["a/b"]\npoll_interval_seconds = -inf',
            "sources.github.poll_interval_seconds: must be a finite number, got -inf",
        ),
        (
            "[delivery]\nbackoff_max_seconds = 1e308",
            "delivery.backoff_max_seconds: must be <= 2592000 (30 days), got 1e+308",
        ),
        (
            "[scheduler]\nmax_backoff_seconds = 9e15",
            "scheduler.max_backoff_seconds: must be <= 2592000 (30 days), got 9e+15",
        ),
    ],
)
def test_an_unbounded_number_is_exit_2_with_its_key_path_from_check_and_run(
    tmp_path, capsys, toml, problem
):
    path = tmp_path / "c.toml"
    path.write_text(toml + "\n")
    for argv in (["check", "--config", str(path)], ["run", "--once", "--config", str(path)]):
        assert cli.main(argv) == 2
        err = capsys.readouterr().err
        assert problem in err and "Traceback" not in err


def test_an_unbounded_interval_gives_one_line_and_no_traceback_from_the_command(tmp_path):
    path = tmp_path / "c.json"
    path.write_text('{"poll_interval_seconds": 1e308, "sources": {"pypi": {"packages": ["x"]}}}')
    result = run_cli("run", "--once", "--config", str(path))
    assert result.returncode == 2
    assert "poll_interval_seconds: must be <= 2592000 (30 days), got 1e+308" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
