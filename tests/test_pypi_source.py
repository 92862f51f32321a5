"""PyPI packages: version_released once per version, pre-releases flagged, baseline first,
304 when nothing changed, errors recorded with the cursor kept."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mrt_engine.simulators.base import Fault
from mrt_engine.simulators.pypi import PyPISimulator


@pytest.fixture
def pypi() -> Iterator[PyPISimulator]:
    sim = PyPISimulator().start()
    yield sim
    sim.stop()


@pytest.fixture
def tracker(make_tracker, pypi, welink):
    return make_tracker(
        {
            "sources": {"pypi": {"packages": ["vllm", "sglang"], "api_base": pypi.url}},
            "notify": {"welink": {"webhook_env": "WL"}},
            "rules": [{"name": "releases", "event_type": ["version_released"]}],
        },
        {"WL": welink.webhook_url},
    )


def events(tracker) -> list[tuple[str, str, str, int]]:
    return tracker.sql(
        "SELECT source_key, event_id, labels, baseline FROM event WHERE source = 'pypi' ORDER BY id"
    )


def test_first_poll_is_a_baseline_then_each_new_version_alerts_once(tracker, pypi, welink):
    for version in ("0.9.0", "0.10.0", "0.10.1"):
        pypi.release("vllm", version)
    pypi.release("sglang", "0.5.0")
    assert tracker.once() == 0
    assert len(events(tracker)) == 4 and all(e[3] == 1 for e in events(tracker))
    assert welink.texts() == []

    pypi.release("vllm", "0.11.0rc1")
    pypi.release("vllm", "0.10.2", yanked=True)
    assert tracker.once() == 0
    new = [e for e in events(tracker) if e[3] == 0]
    assert [(e[0], e[1]) for e in new] == [("pypi:vllm", "0.11.0rc1"), ("pypi:vllm", "0.10.2")]
    assert '"prerelease"' in new[0][2] and '"yanked"' in new[1][2]
    texts = welink.texts()
    assert len(texts) == 2 and any(
        "vllm 0.11.0rc1 released on PyPI (pre-release)" in t for t in texts
    )

    assert tracker.once() == 0  # nothing new: both packages answer 304, nothing sent again
    assert len(welink.texts()) == 2
    polls = tracker.sql("SELECT outcome FROM poll_metric ORDER BY id DESC LIMIT 2")
    assert {p[0] for p in polls} == {"not_modified"}


def test_a_version_without_files_waits_until_it_has_some(tracker, pypi, welink):
    pypi.release("vllm", "0.9.0")
    pypi.release("sglang", "0.5.0")
    tracker.once()
    pypi.release("vllm", "1.0.0", files=())
    tracker.once()
    assert not [e for e in events(tracker) if e[1] == "1.0.0"]
    pypi.release("vllm", "1.0.0")
    tracker.once()
    assert [e for e in events(tracker) if e[1] == "1.0.0"]


@pytest.mark.parametrize(
    "fault",
    [
        Fault(503, path="/pypi/vllm", times=10),
        Fault(kind="html", path="/pypi/vllm", times=10),
        Fault(kind="malformed", path="/pypi/vllm", times=10),
        Fault(200, '{"info": {}, "releases": ["0.1"]}', path="/pypi/vllm", times=10),
    ],
    ids=["503", "html", "malformed", "wrong-shape"],
)
def test_bad_answers_record_an_error_keep_the_cursor_and_spare_other_packages(
    tracker, pypi, welink, fault
):
    pypi.release("vllm", "0.9.0")
    pypi.release("sglang", "0.5.0")
    tracker.once()
    before = tracker.sql("SELECT cursor FROM source_state WHERE source_key = 'pypi:vllm'")
    pypi.release("vllm", "0.9.1")
    pypi.release("sglang", "0.5.1")
    pypi.inject(fault)
    assert tracker.once() == 1
    state = tracker.sql(
        "SELECT cursor, last_error FROM source_state WHERE source_key = 'pypi:vllm'"
    )[0]
    assert state[0] == before[0][0] and state[1]
    assert [e[1] for e in events(tracker) if e[3] == 0] == ["0.5.1"]


def test_a_bad_package_name_is_a_config_error(make_tracker, pypi):
    tracker = make_tracker({"sources": {"pypi": {"packages": ["vllm", "not a name"]}}})
    result = tracker.cli("check")
    assert result.returncode == 2
    assert "sources.pypi.packages" in result.stderr + result.stdout
