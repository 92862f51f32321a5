"""The extractive summary every message gives of an event's text (issue 13, AI1 without AI)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from mrt_engine.notify.extractive import extractive_summary, message_summary, strip_markdown
from mrt_engine.text import body_text

REPO = "vllm-project/vllm"
T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)

# vLLM's bug report form (.github/ISSUE_TEMPLATE/400-bug-report.yml renders like this).
BUG_REPORT = """### Your current environment

<details>
<summary>The output of <code>python collect_env.py</code></summary>

```text
PyTorch version: 2.9.0+cu128
Is debug build: False
CUDA used to build PyTorch: 12.8
```

</details>

### 🐛 Describe the bug

Loading **DeepSeek-V3.2-Exp** with `--tensor-parallel-size 8` fails in `__init__.py` of the
sparse attention backend. The `snake_case_name` option does not help.

```python
from vllm import LLM
```

### Before submitting a new issue...

- [x] Make sure you already searched for relevant issues.
"""


@pytest.mark.sqlite_only("text functions alone")
def test_a_folded_issue_form_reads_as_its_description_without_the_environment_dump():
    body = body_text(BUG_REPORT)  # as stored: one line
    summary = extractive_summary(body, 280)
    assert summary.startswith("🐛 Describe the bug Loading DeepSeek-V3.2-Exp with")
    assert "PyTorch" not in summary and "collect_env" not in summary
    assert "###" not in summary and "**" not in summary and "`" not in summary
    assert "__init__.py" in summary and "snake_case_name" in summary
    assert len(summary) <= 280 and "The snake_case_name option does not help." in summary


@pytest.mark.sqlite_only("text functions alone")
def test_underscores_inside_words_are_not_emphasis_but_around_words_they_are():
    assert strip_markdown("call `__init__` on my_model_name, _really_ __now__") == (
        "call __init__ on my_model_name, really now"
    )
    assert strip_markdown("an open <details> block keeps its text") == (
        "an open block keeps its text"
    )


@pytest.mark.sqlite_only("text functions alone")
def test_the_summary_is_never_longer_than_the_stored_excerpt_and_an_empty_one_stays_empty():
    body = body_text("First sentence here. " * 40)
    assert message_summary("", body) == ""  # body_excerpt_chars = 0: no text in messages
    short = message_summary(body[:99] + "…", body)
    assert short and len(short) <= 100 and short.endswith("here.")
    facts = "downloads 1,234 · likes 56 · text-generation"  # a whole text, not cut
    assert message_summary(facts, None) == facts


def test_a_message_says_the_extractive_summary_with_the_ai_off(gh_tracker, github, welink):
    tracker = gh_tracker()
    github.add_issue(REPO, "seed", at=T0)
    tracker.once()
    github.add_issue(REPO, "DeepSeek-V3.2-Exp fails with TP 8", body=BUG_REPORT)
    assert tracker.once() == 0
    [message] = welink.texts()
    assert "Describe the bug Loading DeepSeek-V3.2-Exp with --tensor-parallel-size 8" in message
    assert "PyTorch version" not in message and "###" not in message and "**" not in message


def test_an_event_whose_source_keeps_no_excerpt_says_no_summary(gh_tracker, github, welink):
    tracker = gh_tracker({"sources": {"github": {"body_excerpt_chars": 0}}})
    github.add_issue(REPO, "seed", at=T0)
    tracker.once()
    github.add_issue(REPO, "DeepSeek-V3.2-Exp fails with TP 8", body=BUG_REPORT)
    assert tracker.once() == 0
    [message] = welink.texts()
    assert "Describe the bug" not in message and "DeepSeek-V3.2-Exp fails" in message
