"""bench/top_removal_on_exact.py: top-k removal of the default, exact Shapley, ContextCite-64
and leave-one-out on a table of every coalition, and the ties-by-leave-one-out ordering."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from bench.top_removal_on_exact import drop, one_question, report, ties_by_loo  # noqa: E402
from tests.worker.evaluation.test_redraw_on_exact import table_row  # noqa: E402


def test_ties_by_loo_reorders_only_neighbours_within_z_stderrs() -> None:
    scores = [1.0, 0.95, 0.5, 0.1]
    loo = [0.2, 0.9, 0.8, 0.0]
    priority = [0, 1, 2, 3]
    stderr = [0.05, 0.05, 0.05, 0.05]  # 0 and 1 are 0.71 combined stderrs apart
    assert ties_by_loo(scores, stderr, loo, priority, z=1.0) == [1, 0, 2, 3]
    assert ties_by_loo(scores, stderr, loo, priority, z=0.5) == [0, 1, 2, 3]
    # a wide stderr chains every neighbour into one group: the order is leave-one-out's
    assert ties_by_loo(scores, [1.0] * 4, loo, priority, z=1.0) == [1, 2, 0, 3]
    # an unknown stderr is no tie
    assert ties_by_loo(scores, [None] * 4, loo, priority, z=5.0) == [0, 1, 2, 3]


def test_drop_reads_the_fall_of_log_p_when_the_first_k_leave() -> None:
    row = table_row()  # log p additive: weights 3, -1, 0.5, 2, 0, 1
    assert drop(row["values"], [0, 3, 5, 2, 4, 1], 2) == pytest.approx(5.0)
    assert drop(row["values"], [1, 0, 5, 2, 4, 3], 2) == pytest.approx(2.0)


def test_on_an_additive_table_every_method_removes_the_top_weights() -> None:
    """Additive log p (p tiny, so ContextCite's logit is log p): the default's every draw,
    exact Shapley, ContextCite-64 and leave-one-out all name documents 0, 3, 5 first, so
    every drop is the top weights' sum and every paired difference is 0."""
    row = {**table_row(offset=-20.0), "model": "m"}
    got = one_question(row, seeds=2, zs=(1.0,), budget=20, tokens=1)
    for method in ("default", "exact", "contextcite-64", "loo", "ties-by-loo@1"):
        assert got[method]["drop@2"] == pytest.approx(5.0, abs=1e-6), method
        assert got[method]["drop@3"] == pytest.approx(6.0, abs=1e-6), method
    lines = report([row, row], [got, got], zs=(1.0,))
    assert "m, 6 documents, N = 2 questions" in lines
    zero = "0.00 [0.00, 0.00]"
    assert f"| default minus contextcite-64 | {zero} | {zero} | {zero} |" in lines


def test_an_interaction_costs_the_loo_ordering_not_the_exact_one() -> None:
    """A bonus of 6 when 3, 4 and 5 are all kept: leave-one-out gives each of them the
    whole bonus (3: 8, 5: 7, 4: 6, 0: 3), exact Shapley a third each (3: 4, 0 and 5: 3,
    4: 2). Removing the top three, leave-one-out's 3, 5, 4 lose the bonus once (9 nats);
    exact Shapley's 3, 0, 5 lose it and document 0 too (12)."""
    row = {**table_row(interaction=6.0, offset=-20.0), "model": "m"}
    got = one_question(row, seeds=2, zs=(1.0,), budget=64, tokens=1)
    assert got["loo"]["drop@2"] == pytest.approx(9.0)  # 3 and 5: 2 + 1 + 6
    assert got["loo"]["drop@3"] == pytest.approx(9.0)
    assert got["exact"]["drop@3"] == pytest.approx(12.0)
    assert got["exact"]["drop@2"] in (pytest.approx(11.0), pytest.approx(9.0))  # 0 and 5 tie
    assert got["default"]["drop@3"] == pytest.approx(12.0)  # 64 = 2^6 coalitions: enumerated
