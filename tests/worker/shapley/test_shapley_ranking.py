"""Candidate answers and passage ranking."""

from __future__ import annotations

import numpy as np

from worker.shapley.ranking import align, explanation_mass, passage_ranking, rank_candidates
from worker.shapley.sampling import Estimate

DOCS = Estimate(
    mean=np.array([[0.6, -0.2, 0.0], [0.3, 0.5, -0.1], [0.1, 0.1, 0.0]]),
    stderr=np.full((3, 3), 0.01),
    coalitions=8,
    answers=["paris", "berlin", "unknown"],
    method="exact",
)


def test_explanation_mass_sums_positive_document_scores() -> None:
    mass = explanation_mass(DOCS, ["paris", "berlin", "unknown", "rome"])
    np.testing.assert_allclose(mass, [1.0, 0.6, 0.0, 0.0])


def test_candidates_are_ranked_by_mass_with_a_frequency_floor() -> None:
    counts = {"paris": 50, "berlin": 40, "unknown": 9, "rome": 1, "madrid": 0}
    surface = {"paris": "Paris.", "berlin": "Berlin", "unknown": "unknown", "rome": "Rome"}
    ranked = rank_candidates(counts, surface, "berlin", DOCS, floor=0.05)
    assert [(c.key, c.text, c.frequency) for c in ranked] == [
        ("paris", "Paris.", 0.5),
        ("berlin", "Berlin", 0.4),
        ("unknown", "unknown", 0.09),
    ]
    np.testing.assert_allclose([c.score for c in ranked], [1.0, 0.6, 0.0])


def test_full_context_answer_is_always_a_candidate() -> None:
    ranked = rank_candidates({"paris": 99, "rome": 1}, {}, "rome", DOCS, floor=0.5)
    assert [c.key for c in ranked] == ["paris", "rome"]
    assert ranked[1].text == "rome"
    assert ranked[1].score == 0.0


def test_ties_prefer_frequency_then_the_full_context_answer() -> None:
    ranked = rank_candidates({"a": 5, "b": 5, "c": 7}, {}, "b", DOCS)
    assert [c.key for c in ranked] == ["c", "b", "a"]


def test_passages_ranked_by_top_answer_with_stable_ties() -> None:
    assert passage_ranking(DOCS, [0, 1, 2], "paris") == [0, 1, 2]
    assert passage_ranking(DOCS, [0, 1, 2], "berlin") == [1, 2, 0]
    assert passage_ranking(DOCS, [0, 1, 2], "unknown") == [0, 2, 1]
    assert passage_ranking(DOCS, [0, 1, 2], "never-seen") == [0, 1, 2]


def test_align_orders_columns_and_zero_fills_unseen_answers() -> None:
    mean, stderr = align(DOCS, ["unknown", "rome", "paris"])
    np.testing.assert_array_equal(mean[:, 0], [0.0, -0.1, 0.0])
    np.testing.assert_array_equal(mean[:, 1], [0.0, 0.0, 0.0])
    np.testing.assert_array_equal(stderr[:, 2], [0.01, 0.01, 0.01])
