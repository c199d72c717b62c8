"""bench/fast_jobs.py on the rule-based fake engine, whose fast sessions answer exactly:
every column then has a known value."""

from __future__ import annotations

import pytest

from bench.fast_jobs import question_row, summary
from tests.fakes import FakeEngine
from worker.evaluation.data import Example
from worker.shapley.units import Document

EXAMPLE = Example(
    id="q1",
    question="What is the capital of France?",
    documents=(
        Document("Bananas are yellow.", "Fruit"),
        Document("Paris is the capital of France.", "France"),
        Document("Berlin is the capital of Germany.", "Germany"),
    ),
)


def test_a_fast_job_that_answers_exactly_agrees_everywhere() -> None:
    engine = FakeEngine()
    row = question_row(engine, EXAMPLE, "fake", budget=16, exact=True)
    assert row["agree"] == 1.0
    assert row["log p gap"] == 0.0
    assert (row["same y"], row["same top-1"], row["Spearman"]) == (1.0, 1.0, pytest.approx(1.0))
    assert row["fast s"] > 0
    assert row["exact s"] > 0
    # fast job, its exact checks, the exact job: three sessions, the middle one exact
    assert [s.stats.fast for s in engine.sessions] == [True, False, False]


def test_without_exact_jobs_only_the_fast_columns() -> None:
    row = question_row(FakeEngine(), EXAMPLE, "fake", budget=16, exact=False)
    assert set(row) == {"fast s", "agree", "log p gap"}
    table = summary([row, {**row, "agree": 0.5}])
    assert "| agree | 0.75 [0.50, 1.00] | 2 |" in table
    assert "Spearman" not in table
