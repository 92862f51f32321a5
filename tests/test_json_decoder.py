"""The compiled JSON decoder behind parse_json (issue 9, pipeline benchmark): it parses what it
accepts, ``json.loads`` decides the rest, and the values are the same whichever parsed them."""

from __future__ import annotations

import json
import math
import random

import pytest

from mrt_engine import untrusted_json
from mrt_engine.untrusted_json import UntrustedJsonError, parse_json

# What msgspec refuses or reads differently at its edges, and plain JSON around them.
EDGES = [
    b'{"a":1,"a":2}',  # duplicate keys: the last wins
    b'"\\ud800"',  # a lone surrogate escape: JSON allows it, Python keeps it
    b'{"title":"x\\udc00y"}',
    b'"\xed\xa0\x80"',  # a surrogate encoded as UTF-8 bytes (json.loads passes it)
    b"NaN",
    b"[Infinity, -Infinity]",
    b"1e400",
    b"1.5e-400",
    b"-0",
    b"-0.0",
    b"123456789012345678901234567890",  # past 64 bits: stays an exact int
    b"-9223372036854775809",
    b"18446744073709551616",
    b"9007199254740993.0",
    b"2.2250738585072014e-308",
    b"\xef\xbb\xbf[1]",  # a UTF-8 byte order mark
    "[1]".encode("utf-16"),
    "[1]".encode("utf-32"),
    b'"\\u0000"',
    '"\u2028 \U0001f600 é"'.encode(),
    b" [1] ",
    b"[" * 600 + b"]" * 600,  # deep, but within both parsers' stacks: the depth check refuses
    b"[" * 100_000 + b"]" * 100_000,
    '"\ud800"',  # str input holding a lone surrogate
    '{"a": [1, 2.5, null, true]}',
    # refused by both
    b"\xff",
    b'"\x01"',
    b"[1,]",
    b"[1] x",
    b"01",
    b"",
    b"\x0c[1]",
    b'{"a" 1}',
]


def _outcome(parse, data):
    try:
        return "ok", parse(data)
    except UntrustedJsonError:
        return "refused", None
    except (ValueError, RecursionError):
        return "refused", None


def _same(a, b) -> bool:
    """Equal values of the same types (NaN equal to NaN, -0.0 told from 0.0)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (
            a == b and math.copysign(1, a) == math.copysign(1, b)
        )
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def _by_json_loads(data):
    """What parse_json returned before the compiled decoder: json.loads, then the depth check."""
    value = json.loads(data)
    if untrusted_json._deeper_than(value, untrusted_json.MAX_DEPTH):
        raise UntrustedJsonError("too deep")
    return value


def test_a_page_of_issues_is_parsed_once_by_the_compiled_decoder(monkeypatch):
    page = json.dumps(
        [
            {"number": n, "title": f"Qwen3 support {n}", "labels": [{"name": "bug"}], "body": "é"}
            for n in range(100)
        ]
    ).encode()

    def not_again(*args, **kwargs):
        raise AssertionError("json.loads parsed an answer the compiled decoder accepts")

    monkeypatch.setattr(untrusted_json.json, "loads", not_again)
    assert parse_json(page) == json.JSONDecoder().decode(page.decode())


@pytest.mark.parametrize("data", EDGES, ids=range(len(EDGES)))
def test_the_compiled_decoder_changes_no_answer_json_loads_gave(data):
    before, now = _outcome(_by_json_loads, data), _outcome(parse_json, data)
    assert before[0] == now[0], data[:40]
    assert _same(before[1], now[1]), data[:40]


def _random_value(rng: random.Random, depth: int):
    roll = rng.random()
    if depth == 0 or roll < 0.4:
        return rng.choice(
            [
                None,
                True,
                False,
                rng.randrange(-(2**70), 2**70),
                rng.randrange(-1000, 1000),
                rng.uniform(-1e300, 1e300),
                rng.random() * 10 ** rng.randrange(-320, 300),
                "".join(
                    chr(rng.choice([rng.randrange(32, 127), rng.randrange(0x80, 0x2FFFF)]))
                    for _ in range(rng.randrange(8))
                ),
            ]
        )
    if roll < 0.7:
        return [_random_value(rng, depth - 1) for _ in range(rng.randrange(4))]
    return {str(rng.randrange(5)): _random_value(rng, depth - 1) for _ in range(rng.randrange(4))}


def test_whatever_both_accept_they_read_alike():
    rng = random.Random(11)
    for _ in range(3000):
        value = _random_value(rng, rng.randrange(6))
        text = json.dumps(value, ensure_ascii=rng.random() < 0.5)
        if rng.random() < 0.2:  # a duplicate key, spelled into the text
            text = '{"k": 1, "k": ' + text + "}"
        data = text.encode("utf-8", "surrogatepass")
        assert _same(parse_json(data), json.loads(data)), data[:80]


def test_without_msgspec_json_loads_parses_everything(monkeypatch):
    monkeypatch.setattr(untrusted_json, "_fast_loads", None)
    assert parse_json(b'{"a": [1, "\\ud800"]}') == {"a": [1, "\ud800"]}
    with pytest.raises(UntrustedJsonError):
        parse_json(b"[1,]")
    with pytest.raises(UntrustedJsonError, match="nested deeper"):
        parse_json(b"[" * 100_000 + b"]" * 100_000)


def _nested(rng: random.Random, depth: int, most: int):
    """A value nesting up to ``most`` levels: lists, dicts of scalars alone (which CPython's
    collector does not track), empty ones, dicts holding containers."""
    if depth >= most or rng.random() < 0.25:
        return rng.choice([1, "x", None, 2.5, True, 10**30, {}, [], {"a": 1, "b": "c"}])
    if rng.random() < 0.5:
        return [_nested(rng, depth + 1, most) for _ in range(rng.randrange(0, 3))]
    return {f"k{i}": _nested(rng, depth + 1, most) for i in range(rng.randrange(0, 3))}


def test_the_depth_check_found_in_c_answers_what_the_walk_of_every_value_answers():
    assert untrusted_json._TRACKING_HOLDS  # CPython: the fast check is the one that runs
    rng = random.Random(12)
    for _ in range(3000):
        value = _nested(rng, 0, rng.randrange(1, 9))
        data = json.dumps(value).encode()
        for parsed in (untrusted_json._loads(data), json.loads(data)):
            for limit in range(0, 10):
                assert untrusted_json._deeper_than_tracked(
                    parsed, limit
                ) == untrusted_json._deeper_than_walked(parsed, limit), (data, limit)


@pytest.mark.parametrize("depth", [63, 64, 65])
def test_an_answer_nested_past_the_limit_is_refused_whatever_its_innermost_container(depth):
    for innermost in (b"[]", b"{}", b'{"a": 1}', b"[1]", b'{"a": "b", "c": null}'):
        data = b'{"x": ' * (depth - 1) + innermost + b"}" * (depth - 1)
        if depth > untrusted_json.MAX_DEPTH:
            with pytest.raises(UntrustedJsonError, match="nested deeper"):
                parse_json(data)
        else:
            assert parse_json(data) is not None
