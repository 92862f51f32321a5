"""Optional AI (issue 13): the local OpenAI-compatible server, the client's cache, budget, rate
limit and fallbacks, and AI1 summaries in messages — against a real server on 127.0.0.1."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import UTC, datetime

import httpx
import pytest

from mrt_engine.ai import ledger
from mrt_engine.ai.client import AiClient
from mrt_engine.ai.settings import AiConfig
from mrt_engine.notify.extractive import extractive_summary, strip_markdown
from mrt_engine.simulators.base import Response
from mrt_engine.simulators.openai_compat import OpenAICompatSimulator, embed
from mrt_engine.store.db import open_store

pytestmark = pytest.mark.both_backends

KEY = "sk-local-TESTKEY-5f4e3d2c1b0a"
REPO = "vllm-project/vllm"
T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
BODY = (
    "## Summary\n\nThis PR adds **DeepSeek-V4** support to the model executor. It wires the new"
    " sparse attention kernels. See [the paper](https://example.com/p).\n\n```python\nx = 1\n```\n"
    "- [x] tests pass\n"
)


@pytest.fixture
def llm():
    with OpenAICompatSimulator(api_key=KEY) as server:
        yield server


@pytest.fixture
def store(store_location):
    s = open_store(store_location)
    try:
        yield s
    finally:
        s.close()


def client_for(store, server, **settings) -> AiClient:
    config = AiConfig(
        enabled=True,
        base_url=server.base_url,
        model="qwen3-8b",
        embedding_model="bge-m3",
        api_key_env="AI_KEY",
        **settings,
    )
    return AiClient(config, store, environ={"AI_KEY": KEY})


ASK = [{"role": "user", "content": "Summarise: DeepSeek-V4 lands in vLLM."}]


# ---------------------------------------------------------------------- the local server
@pytest.mark.sqlite_only("the server alone: no store")
def test_the_local_server_answers_in_openai_shapes():
    with OpenAICompatSimulator(api_key=KEY) as server:
        auth = {"Authorization": f"Bearer {KEY}"}
        chat = httpx.post(
            f"{server.base_url}/chat/completions",
            json={"model": "m", "messages": ASK},
            headers=auth,
        ).json()
        assert chat["object"] == "chat.completion"
        assert chat["choices"][0]["message"]["role"] == "assistant"
        assert chat["choices"][0]["finish_reason"] == "stop"
        usage = chat["usage"]
        assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0
        emb = httpx.post(
            f"{server.base_url}/embeddings", json={"model": "e", "input": ["a", "b"]}, headers=auth
        ).json()
        assert emb["object"] == "list" and [d["index"] for d in emb["data"]] == [0, 1]
        assert emb["data"][0]["object"] == "embedding" and emb["usage"]["prompt_tokens"] > 0
        wrong = httpx.post(f"{server.base_url}/embeddings", json={"model": "e", "input": "a"})
        assert wrong.status_code == 401
        assert wrong.json()["error"]["code"] == "invalid_api_key"
        server.mode = "rate_limited"
        limited = httpx.post(
            f"{server.base_url}/embeddings", json={"model": "e", "input": "a"}, headers=auth
        )
        assert limited.status_code == 429 and limited.headers["retry-after"] == "20"
        assert limited.json()["error"]["code"] == "rate_limit_exceeded"
        server.mode, server.quota = "deterministic", 1
        spent = httpx.post(
            f"{server.base_url}/embeddings", json={"model": "e", "input": "a"}, headers=auth
        )
        assert spent.status_code == 429
        assert spent.json()["error"]["type"] == "insufficient_quota"


@pytest.mark.sqlite_only("the embedding function alone")
def test_the_local_embeddings_are_stable_and_alike_for_alike_texts():
    def cos(a, b):
        return sum(x * y for x, y in zip(a, b, strict=True))

    same = embed("支持 DeepSeek-V4 模型")
    assert same == embed("支持 DeepSeek-V4 模型")
    assert cos(same, embed("DeepSeek-V4 模型支持")) > cos(same, embed("fix a typo in README"))


# ---------------------------------------------------------------------- the client
def test_the_same_text_is_never_paid_for_twice(store, llm):
    client = client_for(store, llm)
    first = client.chat("summary:en", ASK, timeout=5, max_tokens=50)
    second = client_for(store, llm).chat("summary:en", ASK, timeout=5, max_tokens=50)
    assert first is not None and not first.cached and first.tokens > 0
    assert second is not None and second.cached and second.text == first.text
    assert len(llm.chat_requests()) == 1
    vectors = client.embed("topic", ["a text", "another"], timeout=5)
    again = client.embed("topic", ["another", "a text"], timeout=5)
    assert vectors is not None and again is not None and again.cached
    assert again.vectors == (vectors.vectors[1], vectors.vectors[0])
    assert len(llm.embedding_requests()) == 1
    assert ledger.usage(store, datetime.now(UTC))["requests"] == 2


def test_a_spent_daily_budget_stops_requests_even_after_a_restart(store, llm):
    client = client_for(store, llm, daily_token_budget=5)
    assert client.chat("summary:en", ASK, timeout=5, max_tokens=50) is not None
    assert ledger.spent(store, datetime.now(UTC)) >= 5  # counted from the answer's usage
    other = [{"role": "user", "content": "Something else entirely"}]
    restarted = client_for(store, llm, daily_token_budget=5)
    assert restarted.chat("summary:en", other, timeout=5, max_tokens=50) is None
    assert len(llm.chat_requests()) == 1
    day = ledger.usage(store, datetime.now(UTC))
    assert day["fallbacks"] == 1 and "daily token budget spent" in day["last_fallback"]


def test_an_exhausted_quota_upstream_is_a_fallback_and_pauses_the_ai(store, llm):
    llm.quota = 1
    client = client_for(store, llm)
    assert client.chat("summary:en", ASK, timeout=5, max_tokens=50) is not None
    for text in ("b", "c"):
        ask = [{"role": "user", "content": text}]
        assert client.chat("summary:en", ask, timeout=5, max_tokens=9) is None
    assert len(llm.chat_requests()) == 2  # the third never went: paused after the 429
    day = ledger.usage(store, datetime.now(UTC))
    assert day["fallbacks"] == 2 and "paused after a 429" in day["last_fallback"]


@pytest.mark.parametrize("mode", ["slow", "failing", "garbage", "rate_limited"])
def test_every_failure_is_a_recorded_fallback_never_an_exception(store, llm, mode, caplog):
    llm.mode, llm.delay = mode, 3.0
    client = client_for(store, llm)
    with caplog.at_level(logging.WARNING, logger="mrt_engine.ai"):
        assert client.chat("summary:en", ASK, timeout=0.5, max_tokens=50) is None
        assert client.embed("topic", ["x"], timeout=0.5) is None
    day = ledger.usage(store, datetime.now(UTC))
    assert day["fallbacks"] == 2 and day["tokens"] == 0
    assert "fell back" in caplog.text


def test_the_request_rate_limit_is_kept(store, llm):
    client = client_for(store, llm, requests_per_minute=2)
    answers = [
        client.chat("t", [{"role": "user", "content": str(i)}], timeout=5, max_tokens=5)
        for i in range(3)
    ]
    assert [a is not None for a in answers] == [True, True, False]
    assert len(llm.chat_requests()) == 2


def test_the_api_key_never_reaches_logs_or_the_store(store, llm, caplog):
    llm.api_key = "a-different-key-on-the-server"  # every answer a 401 that could echo it
    client = client_for(store, llm)
    with caplog.at_level(logging.DEBUG):
        assert client.chat("summary:en", ASK, timeout=5, max_tokens=50) is None
    assert llm.chat_requests()[0].headers["authorization"] == f"Bearer {KEY}"
    assert KEY not in caplog.text and "401" in caplog.text
    rows = store.db.execute_sql("SELECT * FROM ai_usage").fetchall()
    rows += store.db.execute_sql("SELECT * FROM ai_cache").fetchall()
    assert KEY not in repr(rows)
    assert KEY not in repr(client.__dict__)


# ---------------------------------------------------------------------- summaries
@pytest.mark.sqlite_only("text functions alone")
def test_the_extractive_summary_strips_markdown_and_keeps_the_first_sentences():
    assert strip_markdown("## Head\n- [x] done\n`code` and **bold** [link](http://x)") == (
        "Head\ndone\ncode and bold link"
    )
    text = extractive_summary(BODY, limit=120)
    assert text.startswith("Summary This PR adds DeepSeek-V4 support to the model executor.")
    assert "```" not in text and "](" not in text and len(text) <= 120
    assert extractive_summary("第一句。第二句！第三句？", limit=8) == "第一句。第二句！"


def _tracker(gh_tracker, llm, rules=None, **ai):
    extra = {"watch_keywords": [], "rules": rules} if rules else {}
    return gh_tracker(
        {
            **extra,
            "ai": {
                "enabled": True,
                "base_url": llm.base_url,
                "model": "qwen3-8b",
                "api_key_env": "AI_KEY",
                "summary_timeout_seconds": 1,
                **ai,
            },
        }
    )


def _with_key(tracker):
    tracker.env["AI_KEY"] = KEY
    return tracker


def test_a_message_carries_the_ai_summary_instead_of_the_excerpt(gh_tracker, github, welink, llm):
    tracker = _with_key(_tracker(gh_tracker, llm))
    github.add_issue(REPO, "seed", at=T0)
    tracker.once()
    github.add_issue(REPO, "Support DeepSeek-V4", body=BODY, pull=True)
    assert tracker.once() == 0
    [message] = welink.texts()
    assert "\nAI: " in message  # the local server's summaries start so
    assert "sparse attention kernels" not in message  # the excerpt is replaced
    assert len(llm.chat_requests()) == 1
    assert "Answer in English" in llm.chat_requests()[0].json()["messages"][0]["content"]


def test_a_slow_ai_falls_back_to_the_extractive_summary_and_the_alert_still_goes(
    gh_tracker, github, welink, llm
):
    llm.mode, llm.delay = "slow", 5.0
    tracker = _with_key(_tracker(gh_tracker, llm, summary_timeout_seconds=0.3))
    github.add_issue(REPO, "seed", at=T0)
    tracker.once()
    github.add_issue(REPO, "Support DeepSeek-V4", body=BODY, pull=True)
    assert tracker.once() == 0
    [message] = welink.texts()
    assert "AI:" not in message
    assert "This PR adds DeepSeek-V4 support to the model executor." in message
    assert "**" not in message and "```" not in message
    [(fallbacks,)] = tracker.sql("SELECT fallbacks FROM ai_usage")
    assert fallbacks == 1


def test_a_critical_rules_hit_never_waits_for_the_ai(gh_tracker, github, welink, llm):
    rules = [{"name": "cve", "keywords": ["deepseek"], "critical": True}]
    tracker = _with_key(_tracker(gh_tracker, llm, rules=rules))
    github.add_issue(REPO, "seed", at=T0)
    tracker.once()
    github.add_issue(REPO, "Support DeepSeek-V4", body=BODY, pull=True)
    assert tracker.once() == 0
    [message] = welink.texts()
    assert "This PR adds DeepSeek-V4 support" in message
    assert llm.chat_requests() == []


def test_with_ai_off_the_message_says_the_extractive_summary_and_asks_nothing(
    gh_tracker, github, welink, llm
):
    tracker = gh_tracker()
    github.add_issue(REPO, "seed", at=T0)
    tracker.once()
    github.add_issue(REPO, "Support DeepSeek-V4", body=BODY, pull=True)
    assert tracker.once() == 0
    [message] = welink.texts()
    assert "Summary This PR adds DeepSeek-V4 support to the model executor." in message
    assert "**" not in message and "](" not in message
    assert llm.requests == []


def test_a_protected_alert_never_waits_for_the_ai(store, llm):
    from mrt_engine.ai.summary import Summarizer
    from mrt_engine.notify.message import MessageContext

    summarize = Summarizer(client_for(store, llm))
    alarm = MessageContext(
        event_type="service_checksum_changed",
        source_key="modelhub:svc",
        resource_id="svc",
        title="Checksum changed",
        url="https://hub/svc",
        fingerprint="f" * 64,
        summary="The sha256 of **svc-1.2.tar** changed. Old: abc. New: def.",
    )
    shown = summarize(alarm, "en")
    assert shown.summary_by == "extractive" and shown.summary.startswith("The sha256 of svc-1.2")
    assert llm.requests == []
    normal = summarize(replace(alarm, event_type="pr_opened"), "zh")
    assert normal.summary_by == "ai" and len(llm.chat_requests()) == 1
    assert "Simplified Chinese" in llm.chat_requests()[0].json()["messages"][0]["content"]


# ---------------------------------------------------------------------- hostile answers
class _RawAnswer(OpenAICompatSimulator):
    """Answers every request 200 with ``body`` as it is (a broken or hostile endpoint)."""

    def __init__(self, body: bytes) -> None:
        super().__init__(api_key=None)
        self.body = body

    def _chat(self, request, match):
        return Response(200, self.body, {"Content-Type": "application/json"})

    _embeddings = _chat


HOSTILE = {
    "nested": b"[" * 100_000 + b"]" * 100_000,
    "huge_number": b'{"data": [{"index": 0, "embedding": [1' + b"0" * 400 + b"]}],"
    b' "choices": [{"message": {"content": "ok"}}]}',
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_a_hostile_answer_is_a_recorded_fallback_never_an_exception(store, name, caplog):
    with _RawAnswer(HOSTILE[name]) as server:
        config = AiConfig(enabled=True, base_url=server.base_url, model="m", embedding_model="e")
        client = AiClient(config, store, environ={})
        with caplog.at_level(logging.WARNING, logger="mrt_engine.ai"):
            if name == "nested":
                assert client.chat("summary:en", ASK, timeout=5, max_tokens=5) is None
            assert client.embed("topic", ["x"], timeout=5) is None
    assert "fell back" in caplog.text


def test_a_huge_token_count_spends_the_budget_and_the_answer_is_cached(store):
    body = (
        b'{"choices": [{"message": {"content": "ok"}}], "usage": {"total_tokens": 1'
        + b"0" * 30
        + b"}}"
    )
    with _RawAnswer(body) as server:
        config = AiConfig(enabled=True, base_url=server.base_url, model="m")
        client = AiClient(config, store, environ={})
        assert client.chat("summary:en", ASK, timeout=5, max_tokens=5) is not None
        again = client.chat("summary:en", ASK, timeout=5, max_tokens=5)
        assert again is not None and again.cached  # not paid for twice
        other = [{"role": "user", "content": "another text"}]
        assert client.chat("summary:en", other, timeout=5, max_tokens=5) is None  # spent
    assert len(server.chat_requests()) == 1


def test_a_huge_answer_is_cut_before_it_is_cached_or_read_as_markdown(store, llm):
    """A model that ignores ``max_tokens`` (2 MB of ``*a *a …``: each ``*`` opens emphasis that
    never closes, which a line-long search reads to the end for every ``*``) neither fills the
    cache nor holds the delivery worker: the answer is cut first, the message has its lines."""
    from mrt_engine.ai.summary import MAX_LINE_CHARS, Summarizer
    from mrt_engine.notify.message import MessageContext

    llm.reply = "*a " * 700_000
    client = client_for(store, llm, daily_token_budget=10**9)
    answer = client.chat("summary:en", ASK, timeout=30, max_tokens=50)
    assert answer is not None and len(answer.text) <= 20_000
    [(size,)] = store.db.execute_sql("SELECT MAX(LENGTH(result)) FROM ai_cache").fetchall()
    assert size <= 20_000
    event = MessageContext(
        event_type="pr_opened",
        source_key="github:vllm-project/vllm",
        resource_id=REPO,
        title="Support DeepSeek-V4",
        url="https://github.com/vllm-project/vllm/pull/1",
        fingerprint="e" * 64,
        summary="Adds DeepSeek-V4.",
    )
    shown = Summarizer(client)(event, "en")
    assert shown.summary_by == "ai"
    assert 0 < len(shown.summary) <= MAX_LINE_CHARS


def test_an_api_key_that_is_no_header_value_is_a_recorded_fallback(store, llm, caplog):
    """A key pasted with a zero-width space cannot go into an HTTP header (ASCII only): every
    task falls back, recorded, without the key in the reason; no exception reaches triage (a
    failed poll, every poll) or a topic rule (a quarantined event)."""
    key = "sk-local-\u200bPASTED-KEY-77aa"
    config = AiConfig(
        enabled=True,
        base_url=llm.base_url,
        model="qwen3-8b",
        embedding_model="bge-m3",
        api_key_env="AI_KEY",
    )
    client = AiClient(config, store, environ={"AI_KEY": key})
    with caplog.at_level(logging.WARNING, logger="mrt_engine.ai"):
        assert client.chat("summary:en", ASK, timeout=5, max_tokens=50) is None
        assert client.embed("topic", ["x"], timeout=5) is None
    day = ledger.usage(store, datetime.now(UTC))
    assert day["fallbacks"] == 2
    assert "PASTED-KEY" not in caplog.text and "PASTED-KEY" not in day["last_fallback"]
    assert llm.requests == []


def test_an_ai_summary_with_a_lone_surrogate_still_goes_out(gh_tracker, github, welink, llm):
    """JSON may carry ``\\ud800`` alone: no UTF-8 encodes it, so the first message holding it
    failed as a channel crash (only a retry, reading the cleaned cached answer, went out)."""
    llm.reply = "Adds DeepSeek-V4 \ud800 support.\nWhy it matters: new kernels."
    tracker = _with_key(_tracker(gh_tracker, llm))
    github.add_issue(REPO, "seed", at=T0)
    tracker.once()
    github.add_issue(REPO, "Support DeepSeek-V4", body=BODY, pull=True)
    tracker.once()
    [message] = welink.texts()
    assert "Adds DeepSeek-V4" in message and "new kernels" in message
    assert tracker.sql("SELECT status, attempts FROM delivery") == [("sent", 1)]


@pytest.mark.sqlite_only("the config alone")
@pytest.mark.parametrize("url", ["http://[::1/v1", "ftp://llm.example/v1", "llm.example/v1"])
def test_an_ai_base_url_that_is_no_http_url_is_a_config_error_not_a_crash_at_start(url):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="base_url"):
        AiConfig(enabled=True, base_url=url, model="m")


def test_a_lone_surrogate_in_an_events_text_is_no_failed_request(store, llm):
    """An upstream's JSON may hold ``\\ud800`` alone (events keep it until stored); no UTF-8
    request body can: the text is asked about with it replaced, not failed (a fallback that
    rests the embeddings for every event) or raised (an event set aside)."""
    client = client_for(store, llm)
    answer = client.embed("topic", ["speculative decoding", "draft \ud800 models"], timeout=5)
    assert answer is not None and len(answer.vectors) == 2
    ask = [{"role": "user", "content": "Summarise: DeepSeek-V4 \ud800 lands."}]
    assert client.chat("summary:en", ask, timeout=5, max_tokens=50) is not None
    assert ledger.usage(store, datetime.now(UTC))["fallbacks"] == 0
