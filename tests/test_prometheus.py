"""Prometheus (issue 12): `mrt-engine run --metrics-port N` scraped by a real Prometheus server.

The server is Debian's ``prometheus`` (``/usr/bin/prometheus``), started here on 127.0.0.1 with a
generated scrape config (a one-second scrape and rule interval, storage in the test's folder),
never the system's service; the test asks it PromQL through its HTTP API. The example alerting
rules (config/prometheus/alerts.yml) are loaded into it and checked with ``promtool``. Without
the binaries these tests skip, except where CI requires them (``MRT_REQUIRE_PROMETHEUS=1``, set
by .ci/run, which installs the package): there they fail.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlencode

import pytest
from conftest import free_port, wait_until
from prometheus_client.parser import text_string_to_metric_families

from mrt_engine import __version__
from mrt_engine.prometheus import StoreCollector
from mrt_engine.simulators.base import Fault
from mrt_engine.timeutil import to_store

# The suite runs on SQLite and on PostgreSQL (tests/conftest.py).
pytestmark = pytest.mark.both_backends

REQUIRE_ENV = "MRT_REQUIRE_PROMETHEUS"
ALERTS = Path(__file__).resolve().parent.parent / "config" / "prometheus" / "alerts.yml"
REPO = "vllm-project/vllm"
KEY = f"github:{REPO}:issues"
T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
# The engine polls every second and writes its idle polls every second.
LIVELY = {
    "sources": {"github": {"monitor": {"pulls": False}, "poll_interval_seconds": 1}},
    "scheduler": {"jitter_seconds": 0, "idle_flush_seconds": 1},
}


def binary(name: str) -> str:
    """The path of Prometheus' ``name``; skips (fails where CI requires it) when missing."""
    found = shutil.which(name)
    if found:
        return found
    if os.environ.get(REQUIRE_ENV):
        pytest.fail(f"{name} is required here ({REQUIRE_ENV}): install Debian's prometheus")
    pytest.skip(f"{name} is not installed (Debian's prometheus package)")


@dataclass
class PrometheusServer:
    url: str
    log: Path

    def query(self, promql: str) -> list[dict]:
        """The result vector of an instant query through the HTTP API (/api/v1/query)."""
        address = f"{self.url}/api/v1/query?{urlencode({'query': promql})}"
        with urllib.request.urlopen(address, timeout=10) as answer:
            data = json.load(answer)
        assert data["status"] == "success", data
        return data["data"]["result"]

    def value(self, promql: str) -> float | None:
        """The single value of ``promql`` now, or None when it has none."""
        result = self.query(promql)
        return float(result[0]["value"][1]) if result else None


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[callable]:
    """``prometheus(target_port)``: a Prometheus server scraping 127.0.0.1:target_port."""
    program = binary("prometheus")
    started: list[subprocess.Popen] = []

    def start(target_port: int) -> PrometheusServer:
        folder = tmp_path / "prometheus"
        folder.mkdir()
        config = folder / "prometheus.yml"
        config.write_text(
            json.dumps(  # JSON is YAML
                {
                    "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                    "rule_files": [str(ALERTS)],
                    "scrape_configs": [
                        {
                            "job_name": "mrt",
                            "scrape_timeout": "1s",
                            "static_configs": [{"targets": [f"127.0.0.1:{target_port}"]}],
                        }
                    ],
                }
            )
        )
        port = free_port()
        log = folder / "prometheus.log"
        process = subprocess.Popen(
            [
                program,
                f"--config.file={config}",
                f"--storage.tsdb.path={folder / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=log.open("w"),
        )
        started.append(process)
        server = PrometheusServer(f"http://127.0.0.1:{port}", log)

        def ready() -> bool:
            try:
                with urllib.request.urlopen(f"{server.url}/-/ready", timeout=2) as answer:
                    return answer.status == 200
            except (urllib.error.URLError, OSError):
                return process.poll() is not None  # stop waiting on a dead server

        assert wait_until(ready, timeout=60), log.read_text()[-3000:]
        assert process.poll() is None, log.read_text()[-3000:]
        return server

    yield start
    for process in started:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


@pytest.fixture
def engine_process(tmp_path: Path):
    """``engine_process(tracker, *args)``: a real ``mrt-engine run`` (stopped at the end); its
    log goes to ``engine.log`` in the test's folder (a pipe nobody reads would fill and stop it)."""
    started: list[subprocess.Popen] = []

    def start(tracker, *args: str) -> subprocess.Popen:
        command = [sys.executable, "-m", "mrt_engine", "run", "--config", str(tracker.path)]
        log = (tmp_path / "engine.log").open("w")
        process = subprocess.Popen(
            [*command, *args],
            env={**os.environ, **tracker.env},
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        log.close()
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


def test_a_real_prometheus_scrapes_a_running_engine_and_answers_promql(
    gh_tracker, github, welink, prometheus, engine_process
):
    github.add_issue(REPO, "seed", at=T0)
    tracker = gh_tracker(LIVELY)
    assert tracker.once() == 0  # the baseline
    port = free_port()
    engine = engine_process(tracker, "--metrics-port", str(port))
    server = prometheus(port)
    # Prometheus reaches the engine's exporter: the target is up, the build is known.
    assert wait_until(lambda: server.value('up{job="mrt"}') == 1.0, timeout=60), (
        server.log.read_text()[-2000:]
    )
    info = server.query("mrt_build_info")
    assert info and info[0]["metric"]["version"] == __version__

    # A new issue matches; WeLink refuses its message for good: one dead letter.
    welink.inject(
        Fault(200, '{"code": "58601", "data": null, "message": "param error"}', path="/api/werobot")
    )
    github.add_issue(REPO, "DeepSeek V4 support")
    assert wait_until(
        lambda: server.value('mrt_delivery_dead_letters_total{channel="welink"}') == 1.0,
        timeout=60,
    ), engine_log(tracker)[-3000:]
    assert server.value('mrt_delivery_failures_total{channel="welink",kind="permanent"}') == 1.0
    assert server.value('mrt_outbox_deliveries{channel="welink",status="dead"}') == 1.0
    # The example rules are loaded and the dead letter fires its alert.
    assert wait_until(
        lambda: server.query('ALERTS{alertname="MrtDeadLetters",alertstate="firing"}'),
        timeout=60,
    )
    # The source is polled every second: its 304s and new events add up, and its last success
    # is seconds old.
    assert wait_until(
        lambda: (
            (server.value(f'mrt_http_requests_total{{source="{KEY}",status_class="304"}}') or 0)
            >= 2
        ),
        timeout=60,
    )
    assert server.value(f'mrt_events_new_total{{source="{KEY}"}}') >= 1
    assert server.value(f'sum(mrt_polls_total{{source="{KEY}"}})') >= 3
    assert server.value(f'mrt_poll_duration_seconds_count{{source="{KEY}"}}') >= 3
    age = server.value(f'time() - mrt_source_last_success_timestamp_seconds{{source="{KEY}"}}')
    assert age is not None and age < 60
    assert server.value(f'mrt_rate_limit_remaining{{source="{KEY}"}}') == github.remaining
    assert not server.query('ALERTS{alertname="MrtSourceStale"}')
    assert engine.poll() is None  # the engine runs on


def test_the_example_alerting_rules_pass_promtool():
    promtool = binary("promtool")
    done = subprocess.run(
        [promtool, "check", "rules", str(ALERTS)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 4 rules found" in done.stdout
    for name in ("MrtSourceStale", "MrtOutboxBacklog", "MrtDeadLetters"):
        assert f"alert: {name}" in ALERTS.read_text()


# ---------------------------------------------------------------------- the exporter itself
def engine_log(tracker) -> str:
    return (tracker.path.parent / "engine.log").read_text()


def scrape(url: str) -> dict[str, dict[tuple, float]]:
    """``{sample name: {labels: value}}`` of one scrape of ``url``."""
    with urllib.request.urlopen(url, timeout=10) as answer:
        text = answer.read().decode()
    out: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def test_the_config_names_the_exporter_and_it_listens_on_loopback(
    gh_tracker, github, engine_process
):
    github.add_issue(REPO, "seed", at=T0)
    port = free_port()
    tracker = gh_tracker({**LIVELY, "observability": {"prometheus": {"port": port}}})
    engine_process(tracker)
    url = f"http://127.0.0.1:{port}/metrics"

    def polled() -> bool:
        try:
            found = scrape(url)
        except OSError:
            return False
        return (
            found.get("mrt_polls_total", {}).get((("outcome", "ok"), ("source", KEY)), 0)
            + found.get("mrt_polls_total", {}).get(
                (("outcome", "not_modified"), ("source", KEY)), 0
            )
            > 0
        )

    assert wait_until(polled, timeout=60)
    # Bound to 127.0.0.1 only: on Linux all of 127/8 reaches the host, so a listener on every
    # address (0.0.0.0) would answer on 127.0.0.2 too.
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.2", port)) != 0
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) == 0


def test_a_port_in_use_is_one_line_and_exit_2_before_the_engine_starts(
    gh_tracker, github, engine_process
):
    github.add_issue(REPO, "seed", at=T0)
    tracker = gh_tracker(LIVELY)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        engine = engine_process(tracker, "--metrics-port", str(port))
        engine.wait(60)
    assert engine.returncode == 2
    assert engine_log(tracker).strip().splitlines() == [
        f"mrt-engine: metrics: cannot listen on 127.0.0.1:{port}: Address already in use"
    ]
    assert tracker.baselines() == 0  # it never polled


def collected(collector: StoreCollector) -> dict[str, dict[tuple, float]]:
    out: dict[str, dict[tuple, float]] = {}
    for family in collector.collect():
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def insert_metric(store, row_id: int, outcome: str = "ok", polls: int = 1) -> None:
    at = to_store(datetime.now(UTC))
    with store.write():
        store.db.execute_sql(
            "INSERT INTO poll_metric (id, source_key, started_at, finished_at, duration_ms,"
            " outcome, http_requests, http_2xx, http_304, polls, max_duration_ms)"
            " VALUES (?, ?, ?, ?, 120, ?, ?, ?, ?, ?, 100)",
            (
                row_id,
                KEY,
                at,
                at,
                outcome,
                polls,
                polls if outcome == "ok" else 0,
                polls if outcome != "ok" else 0,
                polls,
            ),
        )


def polls_of(found: dict, outcome: str) -> float:
    return found["mrt_polls_total"].get((("outcome", outcome), ("source", KEY)), 0)


def test_the_collector_counts_rows_from_its_start_each_once_and_late_ones_too(gh_tracker, github):
    """Rows written before the exporter started are not counted; each later row is counted
    once; a row whose id was skipped over (a transaction that committed later, as on
    PostgreSQL) is counted when it appears."""
    github.add_issue(REPO, "seed", at=T0)
    tracker = gh_tracker()
    assert tracker.once() == 0
    with tracker.store() as store:
        collector = StoreCollector(lambda: store)
        first = collected(collector)
        assert polls_of(first, "ok") == 0  # the baseline's poll came before
        assert (
            first["mrt_build_info"][(("python", sys.version.split()[0]), ("version", __version__))]
            == 1
        )
        base = int(store.db.execute_sql("SELECT MAX(id) FROM poll_metric").fetchone()[0])
        insert_metric(store, base + 1)
        insert_metric(store, base + 3, "not_modified", polls=4)
        found = collected(collector)
        assert (polls_of(found, "ok"), polls_of(found, "not_modified")) == (1, 4)
        insert_metric(store, base + 2)  # committed after base + 3
        found = collected(collector)
        assert (polls_of(found, "ok"), polls_of(found, "not_modified")) == (2, 4)
        assert collected(collector)["mrt_polls_total"] == found["mrt_polls_total"]
        answers = found["mrt_http_requests_total"]
        assert answers[(("source", KEY), ("status_class", "2xx"))] == 2
        assert answers[(("source", KEY), ("status_class", "304"))] == 4
        durations = found["mrt_poll_duration_seconds_count"]
        assert durations[(("source", KEY),)] == 6
        assert found["mrt_poll_duration_seconds_sum"][(("source", KEY),)] == pytest.approx(0.12 * 3)


def test_an_attempt_in_flight_is_counted_once_it_ends(gh_tracker, github):
    from mrt_engine.notify.base import SendResult

    github.add_issue(REPO, "seed", at=T0)
    tracker = gh_tracker()
    assert tracker.once() == 0
    github.add_issue(REPO, "DeepSeek V4 support")
    engine = tracker.engine()
    engine.open()
    try:
        collector = StoreCollector(lambda: engine.store)
        collected(collector)  # where the counting starts
        assert engine.poll_source(engine.sources[0]).status == "ok"  # its alert, its delivery
        (claim,) = engine.outbox.claim("welink")
        found = collected(collector)  # scraped while the send is under way: not a send yet
        assert found["mrt_delivery_sends_total"].get((("channel", "welink"),), 0) == 0
        assert found["mrt_outbox_deliveries"][(("channel", "welink"), ("status", "pending"))] == 1
        engine.outbox.complete(claim, SendResult(ok=True, http_status=200), 40)
        found = collected(collector)
        assert found["mrt_delivery_sends_total"][(("channel", "welink"),)] == 1
        assert found["mrt_delivery_successes_total"][(("channel", "welink"),)] == 1
        assert found["mrt_outbox_queue_depth"][(("channel", "welink"),)] == 0
        assert collected(collector)["mrt_delivery_sends_total"][(("channel", "welink"),)] == 1
    finally:
        engine.close()


def test_a_scrape_the_store_cannot_answer_logs_one_line_and_keeps_the_counts(
    gh_tracker, github, caplog
):
    github.add_issue(REPO, "seed", at=T0)
    tracker = gh_tracker()
    assert tracker.once() == 0
    with tracker.store() as store:
        collector = StoreCollector(lambda: store)
        collected(collector)
        base = int(store.db.execute_sql("SELECT MAX(id) FROM poll_metric").fetchone()[0])
        insert_metric(store, base + 1)
        assert polls_of(collected(collector), "ok") == 1
        with store.write():  # the store stops answering the collector's queries
            store.db.execute_sql("ALTER TABLE attempt RENAME TO attempt_elsewhere")
        found = collected(collector)
        assert polls_of(found, "ok") == 1  # what it had counted, still shown
        assert "mrt_build_info" in found
        assert "mrt_source_last_success_timestamp_seconds" not in found
        warnings = [r.getMessage() for r in caplog.records if r.name == "mrt_engine.prometheus"]
        assert len(warnings) == 1 and warnings[0].startswith("metrics: could not read the store")
        assert "\n" not in warnings[0]
        with store.write():
            store.db.execute_sql("ALTER TABLE attempt_elsewhere RENAME TO attempt")
        assert "mrt_source_last_success_timestamp_seconds" in collected(collector)


def test_a_scrape_before_the_store_is_open_shows_the_build_only():
    found = collected(StoreCollector(lambda: None))
    assert list(found) == ["mrt_build_info"]
