"""The removal and keep checks every explanation carries, on rule-based fakes with known
answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.fakes import FakeOracle
from worker.shapley.checks import context_checks, keep_mask, removal_mask
from worker.shapley.coalitions import CoalitionCache
from worker.shapley.segment import document_units
from worker.shapley.units import Document

QUESTION = "What is the capital of France?"


def checks_for(texts: list[str], ranking: list[int], answer: str) -> list:
    docs = [Document(t, "") for t in texts]
    cache = CoalitionCache(FakeOracle(QUESTION, docs))
    return context_checks(cache, document_units(docs), ranking, answer)


def test_removing_the_one_document_that_decides_changes_the_answer() -> None:
    texts = ["Bananas are yellow.", "Paris is the capital of France.", "Rome is old."]
    checks = checks_for(texts, [1, 0, 2], "Paris.")
    assert [(c.kind, c.documents) for c in checks] == [
        ("remove", [1]),
        ("remove", [1, 0]),
        ("keep", [1]),
        ("keep", [1, 0]),
    ]
    remove1, remove2, keep1, keep2 = checks
    assert remove1.answer == "unknown"
    assert remove1.answer_changed
    # the fake scores log 0.9 for its own answer, log 0.1 otherwise, minus 0.001 per word of
    # context: the decisive passage renders as 8 words ("[2] : Paris is the capital of France.")
    assert remove1.logprob_drop == pytest.approx(math.log(9) - 0.001 * 8, abs=1e-9)
    assert remove2.answer_changed
    assert keep1.answer == "Paris."
    assert not keep1.answer_changed
    assert keep1.logprob_drop == pytest.approx(-0.001 * 10, abs=1e-9)  # the others' 5 + 5 words
    assert not keep2.answer_changed


def test_two_sufficient_documents_survive_one_removal_not_two() -> None:
    texts = ["Paris is the capital of France.", "It has the Eiffel Tower.", "Rome is old."]
    remove1, remove2 = [c for c in checks_for(texts, [0, 1, 2], "Paris.") if c.kind == "remove"]
    assert not remove1.answer_changed  # the Eiffel Tower still says paris
    assert remove1.answer == "paris"
    assert remove2.answer_changed
    assert remove2.answer == "unknown"


def test_checks_stop_below_the_number_of_documents() -> None:
    assert checks_for(["Paris is the capital of France."], [0], "Paris.") == []
    two = checks_for(["Paris is the capital of France.", "Rome is old."], [0, 1], "Paris.")
    assert [(c.kind, c.documents) for c in two] == [("remove", [0]), ("keep", [0])]


def test_an_empty_answer_has_no_log_probability_to_lose() -> None:
    texts = ["Bananas are yellow.", "Rome is old."]
    (remove1, keep1) = checks_for(texts, [0, 1], "")
    assert remove1.logprob_drop is None
    assert keep1.logprob_drop is None
    assert remove1.answer == "unknown"
    assert remove1.answer_changed


def test_masks_remove_or_keep_the_ranking_head() -> None:
    assert removal_mask(4, [2, 0, 1, 3], 2).tolist() == [False, True, False, True]
    assert keep_mask(4, [2, 0, 1, 3], 2).tolist() == [True, False, True, False]
    assert np.array_equal(removal_mask(3, [1, 0, 2], 0), np.ones(3, dtype=bool))
