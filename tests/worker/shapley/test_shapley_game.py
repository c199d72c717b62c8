"""Games: answer normalisation, memoisation, batching, hooks, input checks."""

from __future__ import annotations

import numpy as np
import pytest

from tests.worker.shapley.toy_games import Counted, unanimity
from worker.shapley.errors import ShapleyInputError
from worker.shapley.game import CategoricalGame, RealGame, normalize_answer


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  Paris. ", "paris"),
        ("The  EIFFEL\ttower!", "eiffel tower"),
        ("the Beatles", "beatles"),
        ("A theory of an atom", "theory of atom"),
        ("Thesis", "thesis"),
        ("«Berlin»,", "berlin"),
        ("北京。", "北京"),
        ("برلين؟", "برلين"),
        ("Re\u0301sume\u0301", "résumé"),
        ("1,000 $", "1 000"),
        ("", ""),
    ],
)
def test_normalize_answer(raw: str, expected: str) -> None:
    assert normalize_answer(raw) == expected


def test_categorical_game_memoises_and_batches() -> None:
    fn = Counted(unanimity(3, [0, 1]))
    game = CategoricalGame(3, fn, batch_size=2)
    masks = np.array([[1, 1, 0], [1, 1, 0], [0, 0, 0], [1, 0, 1], [1, 1, 1]], dtype=bool)
    values = game.values(masks)
    assert game.answers == ["paris", "unknown"]
    assert game.surface == ["Paris", "unknown"]
    assert values.tolist() == [[1, 0], [1, 0], [0, 1], [0, 1], [1, 0]]
    assert game.evaluations == 4
    assert fn.calls == 2
    game.values(masks[::-1])
    assert fn.calls == 2
    assert len(fn.seen) == len(set(fn.seen)) == 4
    assert game.unseen(np.ones((2, 3), dtype=bool)) == 0
    assert game.unseen(np.array([[0, 1, 1], [0, 1, 1]], dtype=bool)) == 1


def test_progress_and_checkpoint_run_per_batch() -> None:
    seen: list[tuple[int, int]] = []
    checks: list[int] = []
    game = RealGame(
        4,
        lambda m: m.sum(axis=1).astype(float),
        batch_size=3,
        progress=lambda done, total: seen.append((done, total)),
        checkpoint=lambda: checks.append(1),
    )
    game.budget = 16
    masks = (np.arange(7)[:, None] >> np.arange(4) & 1).astype(bool)
    assert game.values(masks).ravel().tolist() == [0, 1, 1, 2, 1, 2, 2]
    assert seen == [(3, 16), (6, 16), (7, 16)]
    assert len(checks) == 3


def test_checkpoint_can_abort_between_batches() -> None:
    calls: list[int] = []

    def stop() -> None:
        if calls:
            raise RuntimeError("stop")

    game = RealGame(2, lambda m: calls.append(1) or np.zeros(len(m)), batch_size=1, checkpoint=stop)
    with pytest.raises(RuntimeError, match="stop"):
        game.evaluate(np.array([[0, 0], [0, 1], [1, 1]], dtype=bool))
    assert game.evaluations == 1


def test_bad_inputs_raise_typed_errors() -> None:
    with pytest.raises(ShapleyInputError, match="at least one feature"):
        CategoricalGame(0, lambda m: [])
    with pytest.raises(ShapleyInputError, match="batch_size"):
        RealGame(2, lambda m: np.zeros(len(m)), batch_size=0)
    game = CategoricalGame(3, lambda m: ["a"] * len(m))
    with pytest.raises(ShapleyInputError, match=r"shape \(m, 3\)"):
        game.values(np.ones((2, 4), dtype=bool))
    with pytest.raises(ShapleyInputError, match="bool array"):
        game.values(np.ones((2, 3), dtype=int))
    short = CategoricalGame(2, lambda m: ["a"])
    with pytest.raises(ShapleyInputError, match="returned 1 answers for 2"):
        short.evaluate(np.array([[0, 0], [1, 1]], dtype=bool))
    bad = RealGame(2, lambda m: np.full(len(m), np.nan))
    with pytest.raises(ShapleyInputError, match="finite floats"):
        bad.evaluate(np.array([[0, 0]], dtype=bool))


def test_answer_game_scores_the_full_answer_on_the_same_coalitions() -> None:
    """With ``log_prob``, one extra output column holds log p(y | S) of every coalition."""
    from worker.shapley.game import LOGPROB_KEY

    calls: list[int] = []

    def answers(masks: np.ndarray) -> list[str]:
        return ["yes" if row[0] else "no" for row in masks]

    def log_prob(masks: np.ndarray) -> list[float]:
        calls.append(len(masks))
        return [float(row.sum()) for row in masks]

    game = CategoricalGame(3, answers, batch_size=2, log_prob=log_prob)
    masks = np.array([[True, True, False], [False, True, True], [True, True, False]])
    values = game.values(masks)
    assert game.outputs == ["yes", "no", LOGPROB_KEY]
    np.testing.assert_array_equal(values, [[1, 0, 2], [0, 1, 2], [1, 0, 2]])
    assert calls == [2]  # the distinct coalitions, once, in the answer game's batch
    assert game.evaluations == 2
