"""Adaptive stopping: sampling ends once the top feature is separated, never before."""

import numpy as np

from tests.worker.shapley.toy_games import categorical_game, real_game, unanimity
from worker.shapley.estimators import estimate
from worker.shapley.stopping import top_separated


def test_rule_needs_the_top_lower_bound_above_every_upper_bound() -> None:
    rule = top_separated("y")
    mean = np.array([[1.0], [0.5], [0.1]])
    assert rule(["y"], mean, np.full((3, 1), 0.1))  # 0.8 > 0.7
    assert not rule(["y"], mean, np.full((3, 1), 0.15))  # 0.7 < 0.8
    wide_third = np.array([[0.1], [0.1], [0.4]])  # the third's upper bound is 0.9
    assert not rule(["y"], mean, wide_third)
    assert not rule(["y"], mean, np.full((3, 1), np.nan))  # unknown spread: keep going
    assert not rule(["other"], mean, np.full((3, 1), 0.01))  # column not seen yet


def test_a_clear_winner_stops_early_and_says_so() -> None:
    def value(masks: np.ndarray) -> np.ndarray:
        return 3.0 * masks[:, 0] + 0.1 * masks[:, 1:].sum(axis=1)

    full = estimate(real_game(value, 10), budget=200, seed=1)
    early = estimate(real_game(value, 10), budget=200, seed=1, separated=top_separated("value"))
    assert not full.stopped_early
    assert full.coalitions > 180
    assert early.stopped_early
    assert early.coalitions < 100
    assert int(np.argmax(early.mean[:, 0])) == 0


def test_two_equal_features_never_separate() -> None:
    game = categorical_game(unanimity(8, [0, 1]), 8)
    est = estimate(game, budget=120, seed=2, separated=top_separated("paris"))
    assert not est.stopped_early
    assert est.coalitions > 100  # whole Owen groups: the budget less what one cannot hold
