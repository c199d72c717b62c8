"""The layered KernelSHAP estimator: exact where its design says it must be, honest stderr,
budget rules, and the categorical game."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from worker.shapley.errors import ShapleyInputError
from worker.shapley.estimators import estimate, fits
from worker.shapley.game import CategoricalGame, RealGame, coalition_key
from worker.shapley.layered import (
    MIN_SPREAD_PAIRS,
    PARTIAL,
    full_layers,
    layer_cost,
    layer_mass,
    size_cost,
)


def second_order(n: int, seed: int) -> tuple[RealGame, np.ndarray, np.ndarray]:
    """v(S) = sum of a_i + sum of b_ij over pairs in S: its Shapley value is known in
    closed form, a_i + sum_j b_ij / 2."""
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=n), np.triu(rng.normal(size=(n, n)), 1)

    def value(masks: np.ndarray) -> list[float]:
        z = masks.astype(float)
        return (z @ a + np.einsum("mi,ij,mj->m", z, b, z)).tolist()

    phi = a + (b + b.T).sum(axis=1) / 2
    return RealGame(n, value), phi, a


@pytest.mark.parametrize("n", [4, 6, 10])
def test_second_order_games_are_exact_from_the_layer_alone(n: int) -> None:
    game, phi, _ = second_order(n, seed=n)
    est = estimate(game, estimator="layered", budget=layer_cost(n), seed=0)
    assert est.coalitions == layer_cost(n) == 2 * n + 2
    np.testing.assert_allclose(est.mean[:, 0], phi, atol=1e-9)
    assert np.all(np.isnan(est.stderr))  # nothing was sampled: no spread to measure


def test_the_middle_keeps_second_order_games_exact_and_measures_a_spread() -> None:
    game, phi, _ = second_order(10, seed=3)
    est = estimate(game, estimator="layered", budget=64, seed=1)
    assert est.coalitions <= 64
    assert est.samples >= 2
    np.testing.assert_allclose(est.mean[:, 0], phi, atol=1e-9)  # the middle is exact too


def test_efficiency_holds_exactly_on_any_game() -> None:
    rng = np.random.default_rng(5)
    table = rng.normal(size=2**7)

    def value(masks: np.ndarray) -> list[float]:
        return [float(table[int("".join("1" if b else "0" for b in m), 2)]) for m in masks]

    game = RealGame(7, value)
    est = estimate(game, estimator="layered", budget=40, seed=2)
    total = value(np.ones((1, 7), bool))[0] - value(np.zeros((1, 7), bool))[0]
    assert est.mean[:, 0].sum() == pytest.approx(total, abs=1e-9)
    assert np.all(np.isfinite(est.stderr))
    assert np.all(est.stderr > 0)


def test_the_stderr_covers_the_exact_values_on_random_games() -> None:
    """Third-order random games at n = 8 (the layer is not exact there): the reported
    stderr covers the exact Shapley value within 2.5 stderr for most features."""
    covered = total = 0
    for seed in range(40):
        rng = np.random.default_rng(seed)
        w = rng.normal(size=(8, 8, 8)) * 0.3

        def value(masks: np.ndarray, w: np.ndarray = w) -> list[float]:
            z = masks.astype(float)
            return (z.sum(1) + np.einsum("mi,mj,mk,ijk->m", z, z, z, w)).tolist()

        exact = estimate(RealGame(8, value), estimator="exact", budget=256).mean[:, 0]
        est = estimate(RealGame(8, value), estimator="layered", budget=100, seed=seed)
        err, se = np.abs(est.mean[:, 0] - exact), est.stderr[:, 0]
        covered += int(np.sum(err <= 2.5 * se))
        total += 8
    assert covered / total >= 0.85


def test_budget_rules() -> None:
    assert fits("layered", 10, 12)
    assert not fits("layered", 10, 11)
    game, _, _ = second_order(10, seed=1)
    with pytest.raises(ShapleyInputError, match="needs 12"):
        estimate(game, estimator="layered", budget=11)
    assert estimate(game, estimator="layered", budget=21).method == PARTIAL
    assert estimate(game, estimator="layered", budget=22).method == "layered"
    assert layer_mass(6) == pytest.approx(0.4 / (0.2 + 0.125 + 1 / 9 + 0.125 + 0.2))
    assert layer_mass(3) == 1.0


def test_the_categorical_game_scores_every_answer() -> None:
    """The answer is "paris" when document 0 is shown, else "unknown": document 0 alone
    carries both answers' scores, and each answer's scores sum to its total."""

    def answer(masks: np.ndarray) -> list[str]:
        return ["paris" if m[0] else "unknown" for m in masks]

    game = CategoricalGame(6, answer)
    est = estimate(game, estimator="layered", budget=30, seed=0)
    paris = est.answers.index("paris")
    unknown = est.answers.index("unknown")
    np.testing.assert_allclose(est.mean[:, paris], [1, 0, 0, 0, 0, 0], atol=1e-9)
    np.testing.assert_allclose(est.mean[:, unknown], [-1, 0, 0, 0, 0, 0], atol=1e-9)


@pytest.mark.parametrize("n", [2, 3])
def test_small_games_are_enumerated_by_the_layer(n: int) -> None:
    game, phi, _ = second_order(n, seed=9)
    est = estimate(game, estimator="layered", budget=2**n + 4, seed=0)
    np.testing.assert_allclose(est.mean[:, 0], phi, atol=1e-9)
    assert est.coalitions == len(set(itertools.product([0, 1], repeat=n)))


def random_game(n: int, seed: int) -> RealGame:
    table = np.random.default_rng(seed).normal(size=2**n)

    def value(masks: np.ndarray) -> list[float]:
        return [float(table[int("".join("1" if b else "0" for b in m), 2)]) for m in masks]

    return RealGame(n, value)


@pytest.mark.parametrize("n", [5, 6, 7])
def test_whole_layers_that_fit_are_enumerated_and_all_of_them_are_exact(n: int) -> None:
    """With every layer in the budget the kernel-weighted regression is the Shapley value
    of any game; with the first two only, sizes 1, 2, n-2 and n-1 are all evaluated."""
    exact = estimate(random_game(n, seed=n), estimator="exact", budget=2**n).mean
    est = estimate(random_game(n, seed=n), estimator="layered", budget=2**n, seed=0)
    assert est.coalitions == 2**n
    np.testing.assert_allclose(est.mean, exact, atol=1e-9)
    assert full_layers(n, 2 + 2 * n + size_cost(n, 2)) == 2
    assert full_layers(n, 1 + 2 * n + size_cost(n, 2)) == 1
    two = estimate(random_game(n, seed=n), estimator="layered", budget=2 + 2 * n + size_cost(n, 2))
    assert two.coalitions == 2 + 2 * n + size_cost(n, 2)
    assert two.samples == 0


def test_a_stderr_needs_three_middle_pairs() -> None:
    """Two pairs (one degree of freedom) covered the exact values of real games for only
    0.80-0.83 of features within 2 stderr; three for 0.92-0.94 (``MIN_SPREAD_PAIRS``)."""
    two = estimate(random_game(7, seed=1), estimator="layered", budget=20, seed=0)
    assert two.samples == 2
    assert np.isnan(two.stderr).all()
    three = estimate(random_game(7, seed=1), estimator="layered", budget=22, seed=0)
    assert three.samples == MIN_SPREAD_PAIRS == 3
    assert np.isfinite(three.stderr).all()


def test_the_partial_layer_one_short_of_the_whole_layer() -> None:
    """At 2n + 1 coalitions every feature but one is evaluated alone as well as left out
    (the one left over is imputed): the scores are efficient, carry no stderr, and follow
    the closed-form values of a second-order game closely."""
    n = 8
    game, phi, a = second_order(n, seed=4)
    est = estimate(game, estimator="layered", budget=2 * n + 1, seed=0)
    assert est.method == PARTIAL
    assert est.coalitions == 2 * n + 1
    assert np.all(np.isnan(est.stderr))  # measured marginals, no sample to spread
    total = game.values(np.ones((1, n), bool))[0, 0] - game.values(np.zeros((1, n), bool))[0, 0]
    assert est.mean[:, 0].sum() == pytest.approx(total)  # efficient
    assert np.corrcoef(est.mean[:, 0], phi)[0, 1] > 0.95


def test_the_partial_layer_evaluates_the_focus_columns_leaders_alone_first() -> None:
    """Document 3 decides the answer: its leave-one-out is the largest, so with room for one
    lone document it is document 3 that the layer evaluates alone, whatever the seed."""
    n = 6

    def answer(masks: np.ndarray) -> list[str]:
        return ["zebra" if m[3] else "unknown" for m in masks]

    for seed in range(5):
        game = CategoricalGame(n, answer)
        est = estimate(game, estimator="layered", budget=n + 3, seed=seed, focus="zebra")
        alone = [i for i in range(n) if game.known(coalition_key(np.eye(n, dtype=bool)[i]))]
        assert alone == [3]
        zebra = est.answers.index("zebra")
        assert int(np.argmax(est.mean[:, zebra])) == 3
        assert est.mean[:, zebra].sum() == pytest.approx(1.0)


def test_at_n_plus_two_the_partial_layer_ranks_by_leave_one_out() -> None:
    n = 7
    game, _, _ = second_order(n, seed=6)
    est = estimate(game, estimator="layered", budget=n + 2, seed=0)
    full = np.ones((1, n), bool)
    out = ~np.eye(n, dtype=bool)
    left_out = game.values(full)[0, 0] - game.values(out)[:, 0]
    assert est.coalitions == n + 2
    np.testing.assert_allclose(np.argsort(est.mean[:, 0]), np.argsort(left_out))
