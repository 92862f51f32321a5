"""Deeply nested JSON (issue 8, item 6) is a malformed answer like any other: never a
RecursionError, a traceback or an "internal error", wherever strangers' JSON is read."""

from __future__ import annotations

import json
import random

import pytest
from test_sources_common import CASES

from mrt_engine.config import ConfigError, parse_text
from mrt_engine.simulators.base import Fault
from mrt_engine.untrusted_json import MAX_DEPTH, UntrustedJsonError, parse_json

DEEP = b"[" * 100_000 + b"]" * 100_000


def nested(levels: int) -> bytes:
    return b'{"a":' * (levels - 1) + b"[1]" + b"}" * (levels - 1)


@pytest.fixture(params=list(CASES))
def case(request, make_tracker):
    spec = CASES[request.param]
    sim = spec.simulator().start()
    tracker = make_tracker({"sources": spec.config(sim), "http": {"max_retries": 0}})
    yield spec, sim, tracker
    sim.stop()


def test_deeply_nested_json_from_any_source_is_a_malformed_answer(case, caplog):
    spec, sim, tracker = case
    spec.seed(sim)
    assert tracker.once() == 0
    cursor = tracker.sql("SELECT cursor FROM source_state")[0][0]
    sim.inject(Fault(200, DEEP, path=spec.path, times=50))
    assert tracker.once() == 1
    after, error = tracker.sql("SELECT cursor, last_error FROM source_state")[0]
    assert after == cursor
    assert "internal error" not in error and "RecursionError" not in error
    assert "Traceback" not in caplog.text


def test_deeply_nested_json_from_github_issues_names_the_nesting(gh_tracker, github):
    github.add_issue("vllm-project/vllm", "seed")
    tracker = gh_tracker({"http": {"max_retries": 0}})
    assert tracker.once() == 0
    github.inject(Fault(200, DEEP, path="/repos/", times=50))
    assert tracker.once() == 1
    error = tracker.sql("SELECT last_error FROM source_state")[0][0]
    assert error.startswith("expected JSON from http://127.0.0.1:")
    assert error.endswith(f"nested deeper than {MAX_DEPTH} levels")


def test_a_deeply_nested_welink_reply_is_a_failed_attempt_not_a_crash(
    gh_tracker, github, welink, caplog
):
    tracker = gh_tracker()
    github.add_issue("vllm-project/vllm", "seed")
    tracker.once()
    github.add_issue("vllm-project/vllm", "Qwen3 support")
    welink.inject(Fault(200, DEEP, path="/api/werobot"))
    assert tracker.once() == 1
    status, error = tracker.sql("SELECT status, last_error FROM delivery")[0]
    assert (status, error) == ("retrying", "WeLink answered non-JSON")
    assert "Traceback" not in caplog.text and "RecursionError" not in caplog.text


def test_nesting_that_json_can_parse_but_no_api_uses_is_refused():
    assert parse_json(nested(MAX_DEPTH)) is not None
    for levels in (MAX_DEPTH + 1, 900):
        with pytest.raises(UntrustedJsonError, match=f"nested deeper than {MAX_DEPTH} levels"):
            parse_json(nested(levels))
    with pytest.raises(UntrustedJsonError):
        parse_json(b"\xff")  # bad UTF-8 is a ValueError too, never a crash
    assert parse_json(b'"plain"') == "plain" and parse_json(b"3") == 3


@pytest.mark.parametrize(
    ("suffix", "text"),
    [
        (".json", '{"a": ' + "[" * 100_000 + "]" * 100_000 + "}"),
        (".toml", "a = " + "[" * 5000 + "]" * 5000),
    ],
    ids=["json", "toml"],
)
def test_a_deeply_nested_config_file_is_a_config_error(tmp_path, suffix, text):
    with pytest.raises(ConfigError) as caught:
        parse_text(text, tmp_path / f"config{suffix}")
    assert "nested too deeply" in str(caught.value)


def test_json_that_nests_within_the_bound_still_parses_as_before():
    data = {"items": [{"labels": [{"name": "x"}], "user": {"login": "a"}}]}
    assert parse_json(json.dumps(data).encode()) == data


def _deeper_by_walking_every_node(value: object, limit: int) -> bool:
    """The plain reference: every node visited with its depth."""
    stack = [(value, 1)] if isinstance(value, dict | list) else []
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        children = node.values() if isinstance(node, dict) else node
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return False


def _random_json(rng: random.Random, depth: int) -> object:
    roll = rng.random()
    if depth == 0 or roll < 0.3:
        return rng.choice([None, True, 0, 1.5, "", "x", "[{", {}, []])
    if roll < 0.65:
        return [_random_json(rng, depth - 1) for _ in range(rng.randrange(4))]
    return {f"k{i}": _random_json(rng, depth - 1) for i in range(rng.randrange(4))}


def test_the_depth_limit_is_the_same_as_a_walk_of_every_node():
    rng = random.Random(9)
    for _ in range(2000):
        value = _random_json(rng, rng.randrange(9))
        text = json.dumps(value).encode()
        for limit in (1, 2, 3, 5, 8):
            too_deep = _deeper_by_walking_every_node(value, limit)
            try:
                parse_json(text, max_depth=limit)
                refused = False
            except UntrustedJsonError:
                refused = True
            assert refused == too_deep, (text, limit)


def test_nesting_in_a_field_the_github_source_never_reads_does_not_fail_its_page(
    gh_tracker, github
):
    """A page of issues is read into the fields the source uses (sources.github.ISSUES_PAGE):
    what it never reads is skipped unread, so an odd deep structure there (within what the
    parser itself can skip) no longer fails the whole page; nesting in a field it reads still
    does."""
    github.add_issue("vllm-project/vllm", "seed")
    tracker = gh_tracker({"http": {"max_retries": 0}})
    assert tracker.once() == 0
    odd = github.add_issue("vllm-project/vllm", "Qwen3 support")
    deep: object = [1]
    for _ in range(MAX_DEPTH + 10):
        deep = {"a": deep}
    odd["reactions"] = deep
    assert tracker.once() == 0
    assert tracker.sql("SELECT title FROM event ORDER BY id")[-1] == ("Qwen3 support",)
    github.add_issue("vllm-project/vllm", "Qwen3 again")["pull_request"] = deep
    assert tracker.once() == 1
    error = tracker.sql("SELECT last_error FROM source_state")[0][0]
    assert error.endswith(f"nested deeper than {MAX_DEPTH} levels"), error


def test_the_depth_limit_of_a_page_read_into_its_shape_counts_what_the_source_keeps():
    """The limit is checked on what a shaped read keeps (the fields the source reads, with
    its Structs counted as objects), the same as a walk of every node of those fields. An
    answer the compiled decoder refuses (a lone surrogate) is read whole by ``json.loads`` and
    checked whole, as before, then put in the same shape."""
    from mrt_engine.sources.github import ISSUES_PAGE, Issue

    rng = random.Random(5)
    for _ in range(1500):
        value = _random_json(rng, rng.randrange(8))
        kept = [{"number": 1, "title": value}]
        page = [{"number": 1, "title": value, "ignored": [[[[value]]]]}]
        refused_whole = {**page[0], "odd": "\ud800"}
        for data, checked in (
            (json.dumps(page).encode(), kept),
            (json.dumps([refused_whole]), [refused_whole]),
        ):
            for limit in (2, 3, 5, 8):
                too_deep = _deeper_by_walking_every_node(checked, limit)
                try:
                    read = parse_json(data, max_depth=limit, shape=ISSUES_PAGE)
                except UntrustedJsonError:
                    assert too_deep, (checked, limit)
                    continue
                assert not too_deep, (checked, limit)
                assert read == [Issue(number=1, title=value)]
