"""Incidents (issue 13): one model family's alerted events across sources, with a timeline."""

from __future__ import annotations

import email
import email.policy
import json
import threading
from datetime import UTC, datetime

import pytest
from conftest import GH_TOKEN, wait_until

pytestmark = pytest.mark.both_backends


@pytest.fixture
def tracker(make_tracker, hf, modelscope, github, welink):
    """HuggingFace and ModelScope orgs of DeepSeek and Qwen, vLLM's pulls and issues; a rule on
    "deepseek" and "qwen", alerting to WeLink."""

    def make(extra=None):
        github.repo("vllm-project/vllm")
        config = {
            "watch_keywords": ["deepseek", "qwen"],
            "sources": {
                "huggingface": {"orgs": ["deepseek-ai", "Qwen"], "api_base": hf.url},
                "modelscope": {"orgs": ["deepseek-ai"], "api_base": modelscope.url},
                "github": {
                    "repos": ["vllm-project/vllm"],
                    "token_env": "GH",
                    "api_base": github.url,
                },
            },
            "notify": {"welink": {"webhook_env": "WL"}},
            **(extra or {}),
        }
        return make_tracker(config, {"GH": GH_TOKEN, "WL": welink.webhook_url})

    return make


def incidents(tracker) -> list[tuple]:
    return tracker.sql(
        "SELECT family, name, events, sources, first_source FROM incident ORDER BY id"
    )


def timeline(tracker, family: str) -> list[tuple]:
    return tracker.sql(
        "SELECT e.title, ie.source, ie.position, ie.source_position, ie.new_source"
        " FROM incident_event ie JOIN incident i ON i.id = ie.incident_id"
        " JOIN event e ON e.id = ie.event_id WHERE i.family = ? ORDER BY ie.position",
        family,
    )


def test_one_model_on_huggingface_modelscope_and_in_a_vllm_pull_request_is_one_incident(
    tracker, hf, modelscope, github
):
    t = tracker()
    assert t.once() == 0  # the baseline
    hf.put_model("deepseek-ai/DeepSeek-V3.2-Exp")
    hf.put_model("Qwen/Qwen3-235B-A22B-FP8")
    assert t.once() == 0
    modelscope.put_model("deepseek-ai/DeepSeek-V3.2-Exp-Base")
    assert t.once() == 0
    github.add_issue("vllm-project/vllm", "[Model] Support deepseek v3.2", pull=True)
    github.add_issue("vllm-project/vllm", "Qwen2.5 tokenizer is slow", body="qwen")
    github.add_issue("vllm-project/vllm", "DeepSeek docs: fix a typo")  # alerted, no model
    assert t.once() == 0
    github.add_issue("vllm-project/vllm", "[Bugfix] DeepSeek-V3.2-Exp FP8 crash", pull=True)
    assert t.once() == 0

    assert sorted(incidents(t)) == [
        ("deepseek-v3.2", "DeepSeek-V3.2", 4, 3, "huggingface:deepseek-ai:models"),
        ("qwen2.5", "Qwen2.5", 1, 1, "github:vllm-project/vllm:issues"),
        ("qwen3", "Qwen3", 1, 1, "huggingface:Qwen:models"),
    ]
    assert timeline(t, "deepseek-v3.2") == [
        ("deepseek-ai/DeepSeek-V3.2-Exp", "huggingface:deepseek-ai:models", 1, 1, 1),
        ("deepseek-ai/DeepSeek-V3.2-Exp-Base", "modelscope:deepseek-ai:models", 2, 2, 1),
        ("[Model] Support deepseek v3.2", "github:vllm-project/vllm:pulls", 3, 3, 1),
        ("[Bugfix] DeepSeek-V3.2-Exp FP8 crash", "github:vllm-project/vllm:pulls", 4, 3, 0),
    ]
    # Only alerted events are linked, each once.
    assert t.sql(
        "SELECT COUNT(*) FROM incident_event ie LEFT JOIN alert a ON a.id = ie.alert_id"
        " WHERE a.event_id IS NULL OR a.event_id <> ie.event_id"
    ) == [(0,)]


def test_events_that_alert_nothing_join_no_incident(tracker, hf):
    t = tracker({"watch_keywords": ["qwen"]})
    assert t.once() == 0
    hf.put_model("deepseek-ai/DeepSeek-V3.2-Exp")  # stored, matches no rule
    assert t.once() == 0
    assert t.sql("SELECT COUNT(*) FROM event WHERE title LIKE '%V3.2%'") == [(1,)]
    assert incidents(t) == []


def test_a_family_seen_again_after_the_window_opens_a_new_incident_and_a_restart_keeps_them(
    tracker, hf, modelscope
):
    t = tracker({"incidents": {"window_days": 2}})
    assert t.once() == 0
    hf.put_model("deepseek-ai/DeepSeek-V3.2-Exp")
    assert t.once() == 0
    modelscope.put_model("deepseek-ai/DeepSeek-V3.2")
    assert t.once(later=86400) == 0  # a day later, a new engine: the same incident
    hf.put_model("deepseek-ai/DeepSeek-V3.2-Speciale")
    assert t.once(later=3 * 86400) == 0  # past the window: a new one
    assert incidents(t) == [
        ("deepseek-v3.2", "DeepSeek-V3.2", 2, 2, "huggingface:deepseek-ai:models"),
        ("deepseek-v3.2", "DeepSeek-V3.2", 1, 1, "huggingface:deepseek-ai:models"),
    ]


def test_an_incident_window_that_is_not_a_positive_number_of_days_is_a_config_error(tracker):
    t = tracker({"incidents": {"window_days": 0}})
    result = t.cli("run", "--once")
    assert result.returncode == 2
    assert "incidents.window_days" in result.stderr


# ---------------------------------------------------------------------- messages and threads
def test_a_later_source_of_an_open_incident_says_so_in_its_message(tracker, hf, github, welink):
    t = tracker()
    assert t.once() == 0
    hf.put_model("deepseek-ai/DeepSeek-V3.2-Exp")
    assert t.once() == 0
    github.add_issue("vllm-project/vllm", "[Model] Support deepseek v3.2", pull=True)
    assert t.once(later=2 * 3600 + 60) == 0  # two hours later
    github.add_issue("vllm-project/vllm", "[Bugfix] DeepSeek-V3.2-Exp FP8 crash", pull=True)
    assert t.once(later=3 * 3600) == 0
    first, second, third = welink.texts()
    assert "source for" not in first  # the first knows of nothing to follow
    assert second.splitlines()[3] == (
        "2nd source for DeepSeek-V3.2: first seen on HuggingFace (deepseek-ai) 2 h ago"
    )
    assert third.splitlines()[3] == (
        "3rd alert for DeepSeek-V3.2 (2 sources): first seen on HuggingFace (deepseek-ai) 3 h ago"
    )


def test_a_replayed_alert_joins_its_familys_incident_once_and_says_its_place(
    tracker, hf, github, welink, smtp
):
    """An event polled before a rule matched it, alerted by ``replay`` once the rule exists, is
    linked like a polled one (in the replay's transaction), and a second replay links nothing."""
    models = {"name": "models", "keywords": ["deepseek"], "source": ["huggingface"]}
    t = tracker({"watch_keywords": [], "rules": [models]})
    assert t.once() == 0
    hf.put_model("deepseek-ai/DeepSeek-V3.2-Exp")
    github.add_issue("vllm-project/vllm", "[Model] Support deepseek v3.2", pull=True)
    assert t.once() == 0  # the pull request matches no rule yet
    assert [e["title"] for e in json.loads(t.cli("incidents", "--json").stdout)[0]["timeline"]]
    assert len(welink.texts()) == 1

    pulls = {"name": "pulls", "keywords": ["deepseek"], "source": ["github"]}
    t = tracker({"watch_keywords": [], "rules": [models, pulls]})
    replayed = t.cli("replay", "--since", "1d", "--json")
    assert replayed.returncode == 0, replayed.stderr
    assert len(json.loads(replayed.stdout)["items"]) == 1
    [incident] = json.loads(t.cli("incidents", "--json").stdout)
    assert (incident["family"], incident["events"], incident["sources"]) == ("deepseek-v3.2", 2, 2)
    assert [e["source_key"] for e in incident["timeline"]] == [
        "huggingface:deepseek-ai:models",
        "github:vllm-project/vllm:pulls",
    ]
    assert t.once() == 0
    _first, second = welink.texts()
    assert "Support deepseek v3.2" in second
    assert second.splitlines()[3] == (
        "2nd source for DeepSeek-V3.2: first seen on HuggingFace (deepseek-ai) just now"
    )
    again = t.cli("replay", "--since", "1d", "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["items"] == []
    # A channel added later: both alerts replayed to it, neither linked a second time.
    email = {
        "smtp_host": smtp.host,
        "smtp_port": smtp.port,
        "from_addr": "mrt@tracker.example",
        "to_list": ["oncall@example.com"],
        "ca_file": smtp.ca_file,
    }
    t = tracker({"watch_keywords": [], "rules": [models, pulls], "notify": {"email": email}})
    to_email = t.cli("replay", "--since", "1d", "--channel", "email", "--json")
    assert to_email.returncode == 0, to_email.stderr
    assert len(json.loads(to_email.stdout)["items"]) == 2
    assert t.sql("SELECT COUNT(*) FROM incident_event") == [(2,)]
    assert incidents(t) == [
        ("deepseek-v3.2", "DeepSeek-V3.2", 2, 2, "huggingface:deepseek-ai:models")
    ]


def test_the_messages_of_one_incident_are_one_e_mail_thread(tracker, hf, modelscope, smtp):
    t = tracker(
        {
            "notify": {
                "email": {
                    "smtp_host": smtp.host,
                    "smtp_port": smtp.port,
                    "from_addr": "mrt@tracker.example",
                    "to_list": ["oncall@example.com"],
                    "ca_file": smtp.ca_file,
                    "locale": "zh",
                }
            }
        }
    )
    assert t.once() == 0
    hf.put_model("deepseek-ai/DeepSeek-V3.2-Exp")
    assert t.once() == 0
    modelscope.put_model("deepseek-ai/DeepSeek-V3.2-Exp")
    hf.put_model("Qwen/Qwen3-8B")
    assert t.once(later=1800) == 0
    mails = {
        m["X-MRT-Fingerprint"]: m
        for m in (
            email.message_from_bytes(e.original_content, policy=email.policy.default)
            for e in smtp.messages
        )
    }
    assert len(mails) == 3
    root = next(m for m in mails.values() if "huggingface:deepseek-ai" in m["Subject"])
    reply = next(m for m in mails.values() if "modelscope" in m["Subject"])
    other = next(m for m in mails.values() if "Qwen3" in body(m))
    assert root["Message-ID"].startswith("<mrt.incident.")
    assert root["In-Reply-To"] is None and root["References"] is None
    assert reply["In-Reply-To"] == root["Message-ID"] == reply["References"]
    assert reply["Message-ID"] != root["Message-ID"]
    assert "DeepSeek-V3.2 的第 2 个来源：30 分钟前首次出现在 HuggingFace (deepseek-ai)" in body(
        reply
    )
    assert other["In-Reply-To"] is None and other["Message-ID"] != root["Message-ID"]


def body(message) -> str:
    return message.get_content().replace("\r\n", "\n")


@pytest.mark.sqlite_only("no store: the wording alone")
def test_ordinals_and_how_long_ago_read_naturally_in_english_and_chinese() -> None:
    from mrt_engine.notify.incident_line import ago, ordinal, source_name

    assert [ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 23, 101, 111)] == [
        "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "23rd", "101st",
        "111th",
    ]  # fmt: skip
    assert [ago(s) for s in (5, 59 * 60, 2 * 3600 + 59 * 60, 47 * 3600, 49 * 3600)] == [
        "just now", "59 min ago", "2 h ago", "47 h ago", "2 d ago",
    ]  # fmt: skip
    assert [ago(s, "zh") for s in (5, 600, 7200, 3 * 86400)] == [
        "刚刚", "10 分钟前", "2 小时前", "3 天前",
    ]  # fmt: skip
    assert source_name("github:vllm-project/vllm:pulls") == "GitHub (vllm-project/vllm PRs)"
    assert source_name("github:vllm-project/vllm:issues") == "GitHub (vllm-project/vllm issues)"
    assert source_name("modelscope:deepseek-ai:models") == "ModelScope (deepseek-ai)"


# ---------------------------------------------------------------------- mrt-engine incidents
def test_the_incidents_command_lists_each_incident_with_its_timeline(tracker, hf, github):
    t = tracker()
    assert t.once() == 0
    assert t.cli("incidents").stdout.startswith("no incidents")
    hf.put_model("deepseek-ai/DeepSeek-V3.2-Exp")
    assert t.once() == 0
    github.add_issue(
        "vllm-project/vllm", "[Model] Support deepseek v3.2 \x1b[31mred\x1b[0m", pull=True
    )
    assert t.once() == 0

    text = t.cli("incidents")
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert "DeepSeek-V3.2  [open]  2 sources, 2 events; first seen" in lines[0]
    assert "  1. " in lines[1] and "HuggingFace (deepseek-ai)  model_added" in lines[1]
    assert lines[1].endswith(": deepseek-ai/DeepSeek-V3.2-Exp")
    assert "GitHub (vllm-project/vllm PRs)  pr_opened" in lines[2]
    assert "\x1b" not in text.stdout  # a title's terminal escapes never reach the terminal

    found = json.loads(t.cli("incidents", "--json").stdout)
    [incident] = found
    assert (incident["family"], incident["name"], incident["events"], incident["sources"]) == (
        "deepseek-v3.2",
        "DeepSeek-V3.2",
        2,
        2,
    )
    assert incident["open"] is True
    assert [e["source_key"] for e in incident["timeline"]] == [
        "huggingface:deepseek-ai:models",
        "github:vllm-project/vllm:pulls",
    ]
    assert incident["timeline"][0]["seen_at"].endswith("Z")


# ---------------------------------------------------------------------- engines sharing a store
@pytest.mark.postgresql_only
def test_two_engines_that_see_a_new_family_at_once_open_one_incident(make_tracker):
    """Two polls of two engines, each with its first DeepSeek-V3.2 alert, commit at the same
    time: the second waits for the first's incident instead of opening another."""
    from mrt_engine import incidents
    from mrt_engine.batch import prepare_batch, write_batch
    from mrt_engine.events import TrackerEvent
    from mrt_engine.rules import RuleConfig, RuleSet
    from mrt_engine.store import postgres

    rules = RuleSet.compile([RuleConfig(name="deepseek", keywords=["deepseek"])], ["welink"])
    now = datetime.now(UTC).replace(microsecond=0)

    def batch(platform: str, title: str):
        key = f"{platform}:deepseek-ai:models"
        event = TrackerEvent(platform, key, "model", title, "model_added", title, title, now)
        return prepare_batch([event], rules, now)

    t = make_tracker({"notify": {"welink": {"webhook_env": "WL"}}}, {"WL": "http://127.0.0.1:9"})
    first_linked, release = threading.Event(), threading.Event()
    second_done = threading.Event()
    with t.store() as store:
        watch = postgres.connect_raw(store.location)

        def first() -> None:
            with store.write():
                one = batch("huggingface", "deepseek-ai/DeepSeek-V3.2-Exp")
                write_batch(store, one)
                incidents.assign(store, one)
                first_linked.set()
                release.wait(30)

        def second() -> None:
            with store.write():
                two = batch("modelscope", "deepseek-ai/DeepSeek-V3.2")
                write_batch(store, two)
                incidents.assign(store, two)
            second_done.set()

        def waiting_for_the_family() -> bool:
            return (
                watch.execute(
                    "SELECT COUNT(*) FROM pg_stat_activity WHERE wait_event = 'advisory'"
                ).fetchone()[0]
                > 0
            )

        threads = [threading.Thread(target=first), threading.Thread(target=second)]
        threads[0].start()
        assert first_linked.wait(30)
        threads[1].start()
        # The second poll waits for the first's lock on the family (without it, it would have
        # committed an incident of its own by now).
        assert wait_until(lambda: second_done.is_set() or waiting_for_the_family())
        assert not second_done.is_set()
        release.set()
        for thread in threads:
            thread.join(30)
        watch.close()
    assert sorted(incidents_of(t)) == [("deepseek-v3.2", 2, 2)]


def incidents_of(tracker) -> list[tuple]:
    return tracker.sql("SELECT family, events, sources FROM incident")


def _alike_events(poll: int, sources: range, per_source: int, now: datetime) -> list:
    """``per_source`` DeepSeek-V3.2 and Qwen3 events of poll ``poll`` from each of ``sources``
    (GitHub repos)."""
    from mrt_engine.events import TrackerEvent

    return [
        TrackerEvent(
            "github",
            f"github:o/r{s}:issues",
            "repo_issue",
            f"o/r{s}",
            "issue_opened",
            f"{poll}-{s}-{i}-{model}",
            f"{model} crash {i}",
            now,
        )
        for s in sources
        for i in range(per_source)
        for model in ("DeepSeek-V3.2", "Qwen3")
    ]


@pytest.mark.parametrize("per_source", [1, 10])
def test_a_polls_events_are_linked_to_their_incidents_in_reads_that_do_not_grow_with_them(
    make_tracker, per_source
):
    """Linking reads each family's open incident and each source's place in it once a poll,
    and writes each incident once: ten times the events of the same families cost the same
    reads (it was about four statements a linked event). The timeline is the one linking
    event by event gives."""
    from mrt_engine import incidents
    from mrt_engine.batch import prepare_batch, write_batch
    from mrt_engine.rules import RuleConfig, RuleSet

    rules = RuleSet.compile([RuleConfig(name="m", keywords=["deepseek", "qwen"])], ["welink"])
    now = datetime.now(UTC).replace(microsecond=0)
    t = make_tracker({"notify": {"welink": {"webhook_env": "WL"}}}, {"WL": "http://127.0.0.1:9"})
    polls = [range(0, 2), range(1, 4)]  # the second: one source known to both incidents, two new
    statements: list[str] = []
    placed = []
    with t.store() as store:
        for number, sources in enumerate(polls):
            batch = prepare_batch(_alike_events(number, sources, per_source, now), rules, now)
            with store.write():
                write_batch(store, batch)
                traced = number == 1 and not store.is_postgresql
                if traced:
                    store.db.connection().set_trace_callback(statements.append)
                placed += incidents.assign(store, batch)
                if traced:
                    store.db.connection().set_trace_callback(None)
    linked = 5 * per_source
    assert len(placed) == 2 * linked
    assert sorted(incidents_of(t)) == [("deepseek-v3.2", linked, 4), ("qwen3", linked, 4)]
    expected: list[tuple] = []
    seen: dict[str, list[str]] = {}
    for sources in polls:
        for s in sources:
            for _ in range(per_source):
                for family in ("deepseek-v3.2", "qwen3"):
                    source = f"github:o/r{s}:issues"
                    known = seen.setdefault(family, [])
                    new = source not in known
                    if new:
                        known.append(source)
                    position = sum(1 for row in expected if row[0] == family) + 1
                    expected.append((family, source, position, len(known), int(new)))
    timeline = t.sql(
        "SELECT i.family, ie.source, ie.position, ie.source_position, ie.new_source"
        " FROM incident_event ie JOIN incident i ON i.id = ie.incident_id ORDER BY ie.event_id"
    )
    assert [tuple(row) for row in timeline] == expected
    assert [p.position for p in placed] == [row[2] for row in expected]
    if statements:  # SQLite: what the second poll asked of it (an executemany traces each row)
        reads = [s for s in statements if s.startswith("SELECT")]
        updates = [s for s in statements if s.startswith("UPDATE incident")]
        assert len(reads) <= 2 + 2 + 2 * 3, (
            reads
        )  # the alerts, linked ones; each family, its sources
        assert len(updates) == 2, updates
