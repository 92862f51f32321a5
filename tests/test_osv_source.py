"""OSV advisories: advisory_published once per id with its severity, a built-in high-priority
rule, token pagination, baseline first."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from mrt_engine.simulators.base import Fault
from mrt_engine.simulators.osv import OsvSimulator


@pytest.fixture
def osv() -> Iterator[OsvSimulator]:
    sim = OsvSimulator(page_size=2).start()
    yield sim
    sim.stop()


@pytest.fixture
def tracker(make_tracker, osv, welink):
    return make_tracker(
        {
            "sources": {
                "osv": {"packages": ["vllm", {"name": "transformers"}], "api_base": osv.url}
            },
            "notify": {"welink": {"webhook_env": "WL"}},
        },
        {"WL": welink.webhook_url},
    )


def test_new_advisories_alert_once_at_high_priority(tracker, osv, welink):
    for n in range(3):  # two pages
        osv.publish("vllm", f"GHSA-old{n}", f"old issue {n}")
    assert tracker.once() == 0
    assert tracker.sql("SELECT COUNT(*) FROM event WHERE baseline = 1")[0][0] == 3
    assert welink.texts() == []

    osv.publish(
        "vllm",
        "GHSA-rce1",
        "Remote code execution via crafted prompt",
        severity="CRITICAL",
        aliases=("CVE-2026-0001",),
    )
    osv.publish(
        "transformers",
        "PYSEC-2026-9",
        "Unsafe deserialisation",
        severity=None,
        cvss="CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
    )
    assert tracker.once() == 0
    rows = tracker.sql(
        "SELECT e.event_id, e.title, e.labels, a.priority, a.rules FROM event e JOIN alert a"
        " ON a.event_id = e.id ORDER BY e.event_id"
    )
    assert [r[0] for r in rows] == ["GHSA-rce1", "PYSEC-2026-9"]
    assert rows[0][1].startswith("[CRITICAL] GHSA-rce1 in vllm: Remote code execution")
    assert "CVE-2026-0001" in rows[0][2] and "severity:CRITICAL" in rows[0][2]
    assert rows[1][1].startswith("[CVSS:3.1/AV:N")
    assert {r[3] for r in rows} == {900} and all("security-advisories" in r[4] for r in rows)
    assert len(welink.texts()) == 2

    assert tracker.once() == 0
    assert len(welink.texts()) == 2


def test_a_user_rule_of_the_same_name_replaces_the_built_in_one(make_tracker, osv, welink):
    tracker = make_tracker(
        {
            "sources": {"osv": {"packages": ["vllm"], "api_base": osv.url}},
            "notify": {"welink": {"webhook_env": "WL"}},
            "rules": [{"name": "security-advisories", "enabled": False}],
        },
        {"WL": welink.webhook_url},
    )
    tracker.once()
    osv.publish("vllm", "GHSA-new", "something")
    tracker.once()
    assert tracker.sql("SELECT COUNT(*) FROM alert")[0][0] == 0


def test_a_bad_answer_keeps_the_cursor(tracker, osv):
    osv.publish("vllm", "GHSA-1", "one")
    tracker.once()
    osv.publish("vllm", "GHSA-2", "two")
    osv.inject(Fault(200, '{"vulns": [{"summary": "no id"}]}', path="/v1/query", times=1))
    osv.inject(Fault(200, '{"vulns": [{"summary": "no id"}]}', path="/v1/query", times=1))
    assert tracker.once() == 1
    errors = tracker.sql("SELECT last_error FROM source_state WHERE last_error IS NOT NULL")
    assert errors and "without an 'id'" in errors[0][0]


def test_an_advisory_rated_by_its_database_keeps_its_cvss_vector_for_messages(tracker, osv):
    tracker.once()
    vector = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"
    osv.publish("vllm", "GHSA-both", "Rated twice", severity="HIGH", cvss=vector)
    osv.publish("vllm", "GHSA-vector", "Vector only", severity=None, cvss=vector)
    tracker.once()
    raws = dict(tracker.sql("SELECT event_id, raw FROM event WHERE baseline = 0"))
    rated, unrated = json.loads(raws["GHSA-both"]), json.loads(raws["GHSA-vector"])
    assert (rated["severity"], rated["cvss"]) == ("HIGH", vector)
    # The vector is the severity already: stored once.
    assert unrated["severity"] == vector and "cvss" not in unrated
