"""`mrt-engine export` and `diff`: a source's current list, and what it added/updated/removed."""

from __future__ import annotations

import csv
import io
import json


def test_export_and_diff_of_a_model_list(make_tracker, modelscope, welink):
    tracker = make_tracker(
        {
            "sources": {"modelscope": {"orgs": ["Qwen"], "api_base": modelscope.url}},
            "notify": {"welink": {"webhook_env": "WL"}},
            "watch_keywords": ["qwen"],
        },
        {"WL": welink.webhook_url},
    )
    for name in ("Qwen3-8B", "Qwen3-32B", "Qwen2.5-VL-7B"):
        modelscope.put_model(f"Qwen/{name}")
    assert tracker.once() == 0
    modelscope.put_model("Qwen/Qwen3-Coder")
    modelscope.put_model("Qwen/Qwen3-8B")  # touched: updated
    assert tracker.once() == 0

    result = tracker.cli("export", "--source", "modelscope:Qwen:models", "--format", "csv")
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert sorted(r["id"] for r in rows) == [
        "Qwen/Qwen2.5-VL-7B",
        "Qwen/Qwen3-32B",
        "Qwen/Qwen3-8B",
        "Qwen/Qwen3-Coder",
    ]
    as_json = json.loads(
        tracker.cli("export", "--source", "modelscope:Qwen:models", "--format", "json").stdout
    )
    assert {r["id"] for r in as_json} == {r["id"] for r in rows}

    diff = tracker.cli("diff", "--source", "modelscope:Qwen:models", "--since", "1h", "--json")
    assert diff.returncode == 0, diff.stderr
    found = json.loads(diff.stdout)
    assert [r["resource"] for r in found["added"]] == ["Qwen/Qwen3-Coder"]
    assert [r["resource"] for r in found["updated"]] == ["Qwen/Qwen3-8B"]
    assert found["removed"] == []
    text = tracker.cli("diff", "--source", "modelscope:Qwen:models", "--since", "1h").stdout
    assert "added: 1" in text and "updated: 1" in text and "removed: 0" in text


def test_export_of_an_unknown_or_time_cursor_source_is_a_clear_error(gh_tracker, github):
    tracker = gh_tracker()
    tracker.once()
    for key in ("nope:nothing", "github:vllm-project/vllm:issues"):
        result = tracker.cli("export", "--source", key)
        assert result.returncode == 2
        assert "Traceback" not in result.stderr and result.stderr.strip()


def test_export_to_a_file_that_cannot_be_written_is_one_line_and_exit_2(
    make_tracker, modelscope, tmp_path
):
    modelscope.put_model("Qwen/Qwen3-8B")
    tracker = make_tracker(
        {"sources": {"modelscope": {"orgs": ["Qwen"], "api_base": modelscope.url}}}
    )
    assert tracker.once() == 0
    (tmp_path / "afile").write_text("")
    for target in ("/proc/mrt-export.csv", str(tmp_path / "afile" / "out.csv")):
        result = tracker.cli("export", "--source", "modelscope:Qwen:models", "-o", target)
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr
        assert f"cannot write {target}" in result.stderr
