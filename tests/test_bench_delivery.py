"""The delivery benchmark runs end to end with tiny counts, so it cannot rot unnoticed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent / "perf" / "bench_delivery.py"


def test_the_delivery_benchmark_delivers_every_alert_and_reports_its_figures():
    result = subprocess.run(
        [sys.executable, str(BENCH), "--alerts", "50", "--workers", "2"],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    assert figures["alerts"] >= 50
    assert figures["outbox"]["sent_in_store"] == figures["alerts"]
    assert figures["outbox"]["deliveries"] == figures["alerts"]
    assert figures["plain_httpx_loop"]["before"]["requests"] == figures["alerts"]
    assert figures["ratio"] > 0 and figures["target_ratio"] == 0.5
