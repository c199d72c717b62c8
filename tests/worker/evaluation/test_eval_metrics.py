"""Metrics on hand-made cases whose values are known."""

import math

import pytest

from worker.evaluation import metrics


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The  Beatles!", "beatles"),
        ("Wilhelm Conrad Röntgen.", "wilhelm conrad röntgen"),
        ("an apple, a pear", "apple pear"),
        ("  ", ""),
    ],
)
def test_normalize_answer(text: str, expected: str) -> None:
    assert metrics.normalize_answer(text) == expected


def test_answer_correct_is_containment_after_normalisation() -> None:
    assert metrics.answer_correct("It was the Wilhelm Conrad Röntgen", ["Wilhelm Conrad Röntgen"])
    assert metrics.answer_correct("1901", ["in 1901", "1901"])
    assert not metrics.answer_correct("Röntgen", ["Wilhelm Conrad Röntgen"])
    assert not metrics.answer_correct("anything", [""])
    assert not metrics.answer_correct("", ["x"])


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("I don't know.", True),
        ("", True),
        ("Unknown", True),
        ("No lo sé", True),
        ("我不知道", True),
        ("わかりません。", True),
        ("لا أعرف", True),
        ("Sijui", True),
        ("No, the document does not contain a sentence that refers to Kibera.", True),
        ("The documents don't contain it", True),
        ("Water does not contain salt", False),
        ("piano serenade", False),
        ("Paris", False),
        ("Known unknowns", False),
    ],
)
def test_is_abstention(answer: str, expected: bool) -> None:
    assert metrics.is_abstention(answer) is expected


def test_recall_at_k_single_gold() -> None:
    ranking = [3, 0, 7, 1, 2]
    assert metrics.recall_at_k(ranking, {3}, 1) == 1.0
    assert metrics.recall_at_k(ranking, {7}, 1) == 0.0
    assert metrics.recall_at_k(ranking, {7}, 3) == 1.0
    assert metrics.recall_at_k(ranking, {9}, 5) == 0.0


def test_recall_at_k_several_relevant_and_none() -> None:
    ranking = [4, 2, 0, 1, 3]
    assert metrics.recall_at_k(ranking, {2, 3}, 1) == 0.0
    assert metrics.recall_at_k(ranking, {2, 3}, 2) == 0.5
    assert metrics.recall_at_k(ranking, {2, 3}, 5) == 1.0
    assert metrics.recall_at_k(ranking, set(), 3) is None


def test_rank_by_scores_breaks_ties_by_given_order() -> None:
    assert metrics.rank_by_scores([0.1, 0.5, 0.1, 0.5, -1.0]) == [1, 3, 0, 2, 4]
    assert metrics.rank_by_scores([0.0, 0.0, 0.0]) == [0, 1, 2]


def test_concentration_values() -> None:
    one = metrics.concentration([0.0, 1.0, -0.5, 0.0])
    assert one is not None
    assert one.entropy == 0.0
    assert one.top1_share == 1.0
    flat = metrics.concentration([0.25, 0.25, 0.25, 0.25])
    assert flat is not None
    assert flat.entropy == pytest.approx(1.0)
    assert flat.top1_share == 0.25
    half = metrics.concentration([0.5, 0.5, 0.0, 0.0])
    assert half is not None
    assert half.entropy == pytest.approx(math.log(2) / math.log(4))
    assert half.top1_share == 0.5


def test_concentration_undefined_without_positive_mass() -> None:
    assert metrics.concentration([0.0, -0.2, 0.0]) is None
    assert metrics.concentration([1.0]) is None


def test_exact_match_needs_the_whole_normalised_answer() -> None:
    assert metrics.exact_match("The Beatles.", ["Beatles"])
    assert not metrics.exact_match("It was the Beatles", ["Beatles"])
    assert not metrics.exact_match("", [""])


def test_echo_is_an_answer_made_of_the_questions_words() -> None:
    question = "Who wrote Hamlet?"
    assert metrics.is_echo("Who wrote Hamlet?", question)
    assert metrics.is_echo("wrote Hamlet", question)
    assert not metrics.is_echo("Hamlet", question)  # one word: may be the answer
    assert not metrics.is_echo("William Shakespeare", question)
    assert not metrics.is_echo("Hamlet was written by Shakespeare", question)  # 1 of 5 words
