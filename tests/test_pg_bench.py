"""tests/perf/bench_pipeline.py --db: the PostgreSQL benchmark runs (tiny sizes) and prints its
figures; its outbox drain sends every delivery exactly once with one engine and with two."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pg_cluster
from conftest import postgresql_address

BENCH = Path(__file__).parent / "perf" / "bench_pipeline.py"


def test_the_postgresql_benchmark_prints_ingest_and_drain_figures(tmp_path):
    address = postgresql_address()
    result = subprocess.run(
        [
            sys.executable,
            str(BENCH),
            "--db",
            f"postgresql://{pg_cluster.USER}@{address}/postgres",
            "--password-env",
            pg_cluster.PASSWORD_ENV,
            "--events",
            "300",
            "--workers",
            "1,2",
            "--drain-deliveries",
            "30",
            "--drain-latency-ms",
            "0",
        ],
        env={**os.environ, pg_cluster.PASSWORD_ENV: pg_cluster.PASSWORD},
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    figures = json.loads(result.stdout)
    assert [r["workers"] for r in figures["runs"]] == [1, 2]
    for run in figures["runs"]:
        assert "failed" not in run, run  # a poll that failed says why
        assert run["events"] == 300
        assert run["ratio"] > 0 and run["copy_ratio"] > 0
    drains = figures["outbox_drain"]["runs"]
    assert [d["engines"] for d in drains] == [1, 2]
    for d in drains:
        assert d["received"] == d["attempts"] == 30 and d["duplicates"] == 0
        assert len(d["sent_per_engine"]) <= d["engines"] and d["deliveries_per_s"] > 0
    # the benchmark's databases are gone
    with pg_cluster.admin_connect(address) as conn:
        left = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'mrt_bench_%'")
        assert left.fetchall() == []
