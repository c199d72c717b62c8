"""Adaptive stopping: sampling ends once the top feature is separated, never before."""

import numpy as np

from tests.worker.shapley.toy_games import categorical_game, real_game, unanimity
from worker.shapley.estimators import estimate
from worker.shapley.exact import shapley_exact
from worker.shapley.sampling import MIN_STOP_SAMPLES, critical_value
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

    full = estimate(real_game(value, 10), budget=512, seed=1)
    early = estimate(real_game(value, 10), budget=512, seed=1, separated=top_separated("value"))
    assert not full.stopped_early
    assert full.coalitions > 480
    assert early.stopped_early
    assert early.samples == MIN_STOP_SAMPLES  # the first round the rule may act on
    assert early.coalitions < 200
    assert int(np.argmax(early.mean[:, 0])) == 0


def test_two_equal_features_never_separate() -> None:
    game = categorical_game(unanimity(8, [0, 1]), 8)
    est = estimate(game, budget=120, seed=2, separated=top_separated("paris"))
    assert not est.stopped_early
    assert est.coalitions > 100  # whole Owen groups: the budget less what one cannot hold


def saturating_game(seed: int, n: int = 10):  # noqa: ANN201
    """The shape of log p(y | S): the log of a mixture of evidence (a few strong passages,
    many weak; higher-order interactions), minus distractors."""
    rng = np.random.default_rng(seed)
    strength, distraction = rng.exponential(size=n) ** 3, rng.exponential(size=n) * 0.1

    def value(masks: np.ndarray) -> np.ndarray:
        x = masks.astype(np.float64)
        return np.log(0.05 + x @ strength) - x @ distraction

    return value


def test_a_stop_names_the_exact_top_feature_on_games_shaped_like_log_p() -> None:
    """The controlled experiment behind MIN_STOP_SAMPLES and the t quantile: 60 games with
    known values; stopping on two Owen groups at 2 stderr named the wrong top feature in 13
    of its 61 stops at budget 128 (100 games); now a stop is (almost) never wrong."""
    stops = wrong = 0
    for seed in range(60):
        value = saturating_game(seed)
        exact = shapley_exact(real_game(value, 10), 1024).mean[:, 0]
        est = estimate(
            real_game(value, 10), budget=512, seed=seed, separated=top_separated("value")
        )
        assert est.method == "owen"
        if est.stopped_early:
            stops += 1
            wrong += int(np.argmax(est.mean[:, 0])) != int(np.argmax(exact))
    assert stops >= 30  # adaptive stopping still saves coalitions
    assert wrong <= 1


def test_the_critical_value_is_students_t() -> None:
    assert critical_value(1) == 12.71
    assert critical_value(7) == 2.36
    assert critical_value(11) == 2.23  # the next smaller table entry: never too narrow
    assert critical_value(100) == 2.0
    assert critical_value(0) == float("inf")
