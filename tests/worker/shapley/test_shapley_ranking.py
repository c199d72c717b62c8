"""Candidate answers and passage ranking."""

from __future__ import annotations

import numpy as np

from worker.shapley.game import LOGPROB_KEY
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


def test_passages_by_the_answer_game_alone_mark_their_ties() -> None:
    assert passage_ranking(DOCS, [0, 1, 2], "paris") == ([0, 1, 2], [])
    assert passage_ranking(DOCS, [0, 1, 2], "berlin") == ([1, 2, 0], [])
    assert passage_ranking(DOCS, [0, 1, 2], "unknown") == ([0, 2, 1], [[0, 2]])
    assert passage_ranking(DOCS, [0, 1, 2], "never-seen") == ([0, 1, 2], [[0, 1, 2]])


JOINT = Estimate(
    mean=np.array([[0.5, 0.1], [0.5, 2.0], [0.0, 2.0], [0.5, 0.1 + 1e-15]]),
    stderr=np.full((4, 2), 0.01),
    coalitions=16,
    answers=["paris", LOGPROB_KEY],
    method="kernel",
)


def test_passages_follow_the_log_probability_game_with_the_answer_game_breaking_ties() -> None:
    ranking, ties = passage_ranking(JOINT, [0, 1, 2, 3], "paris")
    assert ranking == [1, 2, 0, 3]  # 1 and 2 tie on log p; the answer game puts 1 first
    assert ties == [[0, 3]]  # equal in both games (float noise below 1e-12 is no signal)
    ranking, ties = passage_ranking(JOINT, [0, 1, 2, 3], "paris", rank_by="answer")
    assert ranking == [1, 0, 3, 2]
    assert ties == [[0, 3]]


def test_an_answer_of_one_coalition_never_outranks_the_models_answer() -> None:
    counts = {"paris": 1, "berlin": 40, "unknown": 9}
    ranked = rank_candidates(counts, {}, "berlin", DOCS)
    # paris has the largest mass (1.0) but a single coalition behind it
    assert [c.key for c in ranked] == ["berlin", "paris", "unknown"]
    counts["paris"] = 2
    assert [c.key for c in rank_candidates(counts, {}, "berlin", DOCS)][:2] == ["paris", "berlin"]


def test_align_orders_columns_and_zero_fills_unseen_answers() -> None:
    mean, stderr = align(DOCS, ["unknown", "rome", "paris"])
    np.testing.assert_array_equal(mean[:, 0], [0.0, -0.1, 0.0])
    np.testing.assert_array_equal(mean[:, 1], [0.0, 0.0, 0.0])
    np.testing.assert_array_equal(stderr[:, 2], [0.01, 0.01, 0.01])
