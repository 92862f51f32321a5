"""Cells built from stored data: a name cut in its middle keeps both ends, in its width."""

from __future__ import annotations

import pytest

from mrt_tui.cells import both_ends, cut_middle


@pytest.mark.parametrize(
    ("width", "shown"),
    [
        (40, "GitHub (sgl-project/sglang PRs)"),
        (26, "GitHub (sgl-p…/sglang PRs)"),
        (10, "GitHu…PRs)"),
        (2, "G…"),
        (1, "…"),
        (0, ""),
    ],
)
def test_a_name_too_wide_loses_its_middle_and_keeps_its_start_and_end(width, shown):
    cell = cut_middle(both_ends("GitHub (sgl-project/sglang PRs)", "bold"), width)
    assert cell.plain == shown
    assert cell.cell_len <= width
    assert cell.plain == "" or cell.style == "bold"


def test_wide_characters_count_as_the_two_cells_they_take():
    cell = cut_middle(both_ends("魔搭 (通义千问/Qwen 模型库)"), 11)
    assert cell.plain == "魔搭 …型库)"
    assert cell.cell_len == 11
    assert cut_middle(both_ends("模型库模型库"), 4).cell_len <= 4
