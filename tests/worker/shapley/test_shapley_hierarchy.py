"""Hierarchy: which units are refined, the shared coalition cache, per-level efficiency."""

from __future__ import annotations

import numpy as np
import pytest

from tests.fakes import FakeOracle
from worker.shapley.coalitions import CoalitionCache, input_key
from worker.shapley.errors import ShapleyInputError
from worker.shapley.game import LOGPROB_KEY
from worker.shapley.hierarchy import Hierarchy, LevelScores, Plan, matters, ranked_column
from worker.shapley.sampling import Estimate
from worker.shapley.segment import document_units, sentence_units, word_units
from worker.shapley.units import Document

DOCS = [
    Document("Paris is the capital of France. It has the Eiffel Tower. Tourists visit.", "Paris"),
    Document("Bananas are yellow. They grow in warm places.", "Fruit"),
    Document("Berlin is the capital of Germany. It is old.", "Berlin"),
    Document("Rome is the capital of Italy.", "Rome"),
]


def fake_estimate(mean: list[list[float]], stderr: float = 0.0) -> Estimate:
    array = np.array(mean, dtype=float)
    return Estimate(array, np.full_like(array, stderr), 10, ["a", "b"][: array.shape[1]], "x")


def test_top_k_takes_the_k_largest_positive_best_scores() -> None:
    est = fake_estimate([[0.5, -0.5], [0.1, 0.0], [0.0, 0.3], [0.5, 0.0], [-0.2, 0.0]])
    assert matters(est, "top_k", 1, 0.0) == [True, False, False, False, False]
    assert matters(est, "top_k", 2, 0.0) == [True, False, False, True, False]
    assert matters(est, "top_k", 3, 0.0) == [True, False, True, True, False]
    assert matters(est, "top_k", 5, 0.0) == [True, True, True, True, False]


def test_threshold_uses_the_lower_confidence_bound() -> None:
    est = fake_estimate([[0.5, -0.5], [0.1, 0.0], [0.0, 0.3]], stderr=0.15)
    assert matters(est, "threshold", 2, 0.05) == [True, False, True]
    assert matters(est, "threshold", 2, 0.2) == [True, False, False]
    with pytest.raises(ShapleyInputError, match="unknown refine rule"):
        matters(est, "best", 2, 0.0)


def test_a_column_scores_alone_and_an_unknown_stderr_leaves_the_mean() -> None:
    est = fake_estimate([[0.1, 0.9], [0.6, 0.0], [0.3, -0.2]])
    assert matters(est, "top_k", 1, 0.0, column=0) == [False, True, False]
    assert matters(est, "top_k", 1, 0.0) == [True, False, False]  # best over the answers
    unknown = Estimate(est.mean, np.full_like(est.mean, np.nan), 10, ["a", "b"], "x")
    assert matters(unknown, "threshold", 2, 0.2, column=0) == [False, True, True]


def ranked_estimate() -> Estimate:
    """Document 3 carries another answer ("rome") most; log p(paris) and the answer game's
    column for paris both put document 0 first."""
    mean = [[0.4, -0.3, 2.0], [0.0, 0.0, 0.1], [0.1, 0.0, 0.3], [-0.1, 0.8, -0.5]]
    return Estimate(np.array(mean), np.zeros((4, 3)), 10, ["paris", "rome", LOGPROB_KEY], "x")


@pytest.mark.parametrize("rank_by", ["logprob", "answer"])
def test_refinement_follows_the_passage_ranking_of_the_full_context_answer(rank_by) -> None:
    est = ranked_estimate()
    assert ranked_column(est, "paris", rank_by) == (2 if rank_by == "logprob" else 0)
    assert matters(est, "top_k", 1, 0.0) == [False, False, False, True]  # the old rule
    plan = Plan(k=1, answer_text="Paris", rank_by=rank_by)
    hierarchy = Hierarchy(DOCS, CoalitionCache(FakeOracle("q?", DOCS)), plan)
    units = hierarchy.refine(LevelScores("document", document_units(DOCS), est))
    assert [u.level for u in units] == ["sentence"] * 3 + ["document"] * 3
    assert {u.document for u in units if u.level == "sentence"} == {0}


def test_without_the_answers_column_refinement_takes_the_best_over_answers() -> None:
    est = fake_estimate([[0.5, -0.5], [0.1, 0.9]])
    assert ranked_column(est, "", "logprob") is None
    assert ranked_column(est, "c", "answer") is None


def test_input_key_is_shared_across_levels() -> None:
    docs_units = document_units(DOCS)
    sentences = sentence_units(DOCS, 0)
    level2 = sentences + docs_units[1:]
    words = word_units(DOCS, sentences[1])
    level3 = [sentences[0], *words, sentences[2], *docs_units[1:]]
    full = [np.ones(len(u), dtype=bool) for u in (docs_units, level2, level3)]
    assert input_key(docs_units, full[0]) == input_key(level2, full[1])
    assert input_key(level2, full[1]) == input_key(level3, full[2])
    only_doc0 = np.array([True, False, False, False])
    sentences_of_doc0 = np.array([True, True, True, False, False, False])
    assert input_key(docs_units, only_doc0) == input_key(level2, sentences_of_doc0)
    drop_s1 = np.array([True, False, True, True, True, True])
    drop_words = np.array([True] + [False] * len(words) + [True] * 4)
    assert input_key(level2, drop_s1) != input_key(level3, drop_words)
    assert input_key(level2, np.zeros(6, dtype=bool)) == input_key(level3, ~full[2])


def test_cache_sends_each_distinct_input_to_the_oracle_once() -> None:
    oracle = FakeOracle("q?", DOCS)
    cache = CoalitionCache(oracle)
    docs_units = document_units(DOCS)
    level2 = sentence_units(DOCS, 0) + docs_units[1:]
    masks = np.array([[1, 1, 1, 1], [1, 0, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]], dtype=bool)
    assert cache.answers(docs_units, masks) == ["Paris.", "Paris.", "Paris.", "unknown"]
    assert oracle.stats.forward_passes == 3
    again = np.array([[1, 1, 1, 1, 1, 1], [0] * 6, [1, 1, 1, 0, 0, 0]], dtype=bool)
    assert cache.answers(level2, again) == ["Paris.", "unknown", "Paris."]
    assert oracle.stats.forward_passes == 3
    assert cache.evaluated == 3
    assert dict(cache.counts) == {"paris": 2, "unknown": 1}


def run_levels(plan: Plan, oracle: FakeOracle) -> list[LevelScores]:
    hierarchy = Hierarchy(DOCS, CoalitionCache(oracle), plan)
    first = hierarchy.first()
    second = hierarchy.next(first, "sentence", 1)
    return [first, second, hierarchy.next(second, "word", 2)]


@pytest.mark.parametrize("estimator", ["auto", "permutation", "owen", "kernel"])
def test_every_level_is_efficient_per_answer(estimator: str) -> None:
    oracle = FakeOracle("q?", DOCS)
    levels = run_levels(Plan(estimator=estimator, budget=200, seed=3, k=1), oracle)
    full = oracle.answer_for(oracle.context(document_units(DOCS), np.ones(4, dtype=bool)))
    assert full == "Paris."
    for scores in levels:
        est = scores.estimate
        totals = dict(zip(est.answers, est.mean.sum(axis=0), strict=True))
        for answer, total in totals.items():
            expected = float(answer == "paris") - float(answer == "unknown")
            assert total == pytest.approx(expected, abs=1e-9), (scores.level, answer)
        assert est.coalitions <= 200


def test_refinement_splits_only_what_matters() -> None:
    oracle = FakeOracle("q?", DOCS)
    first, second, third = run_levels(Plan(budget=64, k=1), oracle)
    assert [u.level for u in first.units] == ["document"] * 4
    assert [u.text for u in second.units][:3] == [
        "Paris is the capital of France.",
        "It has the Eiffel Tower.",
        "Tourists visit.",
    ]
    assert [u.level for u in second.units] == ["sentence"] * 3 + ["document"] * 3
    refined = [u for u in third.units if u.level == "word"]
    assert {u.text for u in refined} >= {"Paris", "capital", "France."}
    assert [u.level for u in third.units][-3:] == ["document"] * 3
    for scores in (first, second, third):
        for unit in scores.units:
            assert DOCS[unit.document].text[unit.start : unit.end] == unit.text


def test_nothing_matters_reuses_the_level_without_new_coalitions() -> None:
    docs = [Document("Nothing here. Really."), Document("Still nothing.")]
    oracle = FakeOracle("q?", docs)
    hierarchy = Hierarchy(docs, CoalitionCache(oracle), Plan(budget=16))
    first = hierarchy.first()
    second = hierarchy.next(first, "sentence", 1)
    assert second.units == first.units
    assert second.estimate.coalitions == 0
    np.testing.assert_array_equal(second.estimate.mean, first.estimate.mean)


def test_a_sampler_too_big_for_the_budget_falls_back_to_kernel() -> None:
    oracle = FakeOracle("q?", DOCS)
    plan = Plan(estimator="permutation", budget=16, k=1)
    hierarchy = Hierarchy(DOCS, CoalitionCache(oracle), plan)
    first = hierarchy.first()
    assert first.estimate.method == "permutation"
    words = hierarchy.next(hierarchy.next(first, "sentence", 1), "word", 2)
    assert len(words.units) > 8
    assert words.estimate.method == "kernel"
    assert words.estimate.coalitions <= 16
