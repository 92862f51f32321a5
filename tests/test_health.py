"""Error as state (S2): one "unhealthy" alert after N failed polls in a row, one "recovered"
alert when the source works again; never one alert per failure."""

from __future__ import annotations

from mrt_engine.simulators.base import Fault


def test_one_unhealthy_alert_then_one_recovered_alert(gh_tracker, github, welink):
    github.add_issue("vllm-project/vllm", "[Model] Support DeepSeek-V3")
    tracker = gh_tracker({"scheduler": {"unhealthy_after_failures": 2}, "http": {"max_retries": 0}})
    assert tracker.once() == 0  # the baseline
    github.inject(Fault(502, "bad gateway", path="/repos/", times=100))
    engine = tracker.engine()
    engine.open()
    try:
        source = engine.sources[0]
        outcomes = [engine.poll_source(source, force=True) for _ in range(4)]
        assert [o.status for o in outcomes] == ["error"] * 4
        engine.deliver_once()
        github.clear_faults()
        assert engine.poll_source(source, force=True).status in ("ok", "not_modified")
        assert engine.poll_source(source, force=True).status in ("ok", "not_modified")
        engine.deliver_once()
    finally:
        engine.close()
    kinds = tracker.sql(
        "SELECT e.event_type, e.title, d.status FROM event e JOIN alert a ON a.event_id = e.id"
        " JOIN delivery d ON d.alert_id = a.id WHERE e.source = 'mrt' ORDER BY e.id"
    )
    assert [(k, s) for k, _t, s in kinds] == [
        ("source_unhealthy", "sent"),
        ("source_recovered", "sent"),
    ]
    assert (
        "2 polls in a row" in kinds[0][1]
        and "502"
        in tracker.sql("SELECT summary FROM event WHERE event_type = 'source_unhealthy'")[0][0]
    )
    texts = welink.texts()
    assert sum("is failing" in t for t in texts) == 1
    assert sum("works again" in t for t in texts) == 1


def test_a_single_failure_is_counted_in_the_singular(gh_tracker, github, welink):
    github.add_issue("vllm-project/vllm", "[Model] Support DeepSeek-V3")
    tracker = gh_tracker({"scheduler": {"unhealthy_after_failures": 1}, "http": {"max_retries": 0}})
    assert tracker.once() == 0  # the baseline
    github.inject(Fault(502, "bad gateway", path="/repos/", times=1))
    engine = tracker.engine()
    engine.open()
    try:
        source = engine.sources[0]
        assert engine.poll_source(source, force=True).status == "error"
        assert engine.poll_source(source, force=True).status in ("ok", "not_modified")
    finally:
        engine.close()
    titles = [t for (t,) in tracker.sql("SELECT title FROM event WHERE source = 'mrt' ORDER BY id")]
    assert titles == [
        "Source github:vllm-project/vllm:issues is failing: 1 poll in a row",
        "Source github:vllm-project/vllm:issues works again after 1 failed poll",
    ]
    [(error,)] = tracker.sql("SELECT error FROM poll_metric WHERE outcome = 'error'")
    assert error.endswith("(after 1 try)")
