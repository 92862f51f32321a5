"""The internal Model Hub: published, stable and checksum-changed service versions; the
checksum alarm goes out at the highest priority even when a user rule would suppress it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mrt_engine.simulators.base import Fault
from mrt_engine.simulators.modelhub import ModelHubSimulator

TOKEN = "mh-SECRET-token-123"


@pytest.fixture
def hub() -> Iterator[ModelHubSimulator]:
    sim = ModelHubSimulator(token=TOKEN).start()
    yield sim
    sim.stop()


@pytest.fixture
def tracker(make_tracker, hub, welink):
    return make_tracker(
        {
            "sources": {"modelhub": {"api_base": hub.url, "token_env": "MH"}},
            "notify": {"welink": {"webhook_env": "WL"}},
            "rules": [
                {"name": "hub", "source": ["modelhub"]},
                # An over-eager suppress rule must not silence a supply-chain alarm.
                {"name": "quiet", "source": ["modelhub"], "action": "suppress", "priority": 1000},
            ],
        },
        {"WL": welink.webhook_url, "MH": TOKEN},
    )


def new(tracker):
    return tracker.sql(
        "SELECT e.event_type, e.event_id, a.priority FROM event e LEFT JOIN alert a ON a.event_id = e.id"
        " WHERE e.baseline = 0 ORDER BY e.id"
    )


def test_published_stable_and_checksum_changes(tracker, hub, welink):
    hub.publish("nmt-m2m100", "1.0.0", stable=True)
    assert tracker.once() == 0
    assert welink.texts() == []

    hub.publish("nmt-m2m100", "1.1.0")
    hub.publish("asr-whisper", "2.0.0")
    assert tracker.once() == 0
    assert {(r[0], r[1]) for r in new(tracker)} == {
        ("service_version_published", "nmt-m2m100@1.1.0"),
        ("service_version_published", "asr-whisper@2.0.0"),
    }
    assert all(r[2] is None for r in new(tracker))  # suppressed by the user's "quiet" rule

    hub.set_version("nmt-m2m100", "1.1.0", stable=True)
    hub.set_version("nmt-m2m100", "1.0.0", sha256="f" * 64)
    assert tracker.once() == 0
    rows = new(tracker)[2:]
    assert {(r[0], r[1]) for r in rows} == {
        ("service_version_stable", "nmt-m2m100@1.1.0:stable"),
        ("service_checksum_changed", f"nmt-m2m100@1.0.0:{'f' * 64}"),
    }
    alarm = next(r for r in rows if r[0] == "service_checksum_changed")
    assert alarm[2] == 1000
    assert any("SUPPLY-CHAIN ALARM" in t for t in welink.texts())

    assert tracker.once() == 0  # nothing changed: the details answer 304
    assert len(new(tracker)) == 4
    assert TOKEN not in str(tracker.sql("SELECT * FROM source_state"))


def test_a_missing_or_wrong_token_is_an_error_that_keeps_the_cursor(tracker, hub):
    hub.publish("nmt-m2m100", "1.0.0")
    tracker.once()
    hub.inject(Fault(401, '{"detail": "Not authenticated"}', path="/api/services", times=5))
    assert tracker.once() == 1
    error = tracker.sql("SELECT last_error FROM source_state")[0][0]
    assert "401" in error or "token" in error.lower()
