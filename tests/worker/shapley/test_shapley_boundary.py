"""Coalitions on the ranking's open boundaries (``worker/shapley/boundary.py``): the paired
difference is exact where the layers hold every size and unbiased where it draws, the pair
keeps its sum, and the layered estimator reserves them only within its budget."""

from __future__ import annotations

import numpy as np
import pytest

from worker.shapley.boundary import (
    boundary_cost,
    open_sizes,
    pair_difference,
    refine_boundaries,
)
from worker.shapley.estimators import estimate
from worker.shapley.exact import shapley_exact
from worker.shapley.game import RealGame
from worker.shapley.layered import full_layers, layer_pairs, reserved_boundaries


def table_game(n: int, seed: int) -> RealGame:
    """A game with interactions of every order: an independent normal value per coalition."""
    table = np.random.default_rng(seed).normal(size=2**n)

    def value(masks: np.ndarray) -> list[float]:
        return [float(table[int("".join("1" if b else "0" for b in m), 2)]) for m in masks]

    return RealGame(n, value)


def exact_values(n: int, seed: int) -> np.ndarray:
    game = table_game(n, seed)
    return shapley_exact(game, 2**n).mean[:, 0]


def test_open_sizes_are_the_sizes_no_layer_holds() -> None:
    assert open_sizes(8, 2) == [2, 3, 4]  # T + a of sizes 3, 4, 5
    assert open_sizes(10, 2) == [2, 3, 4, 5, 6]
    assert open_sizes(6, 3) == []
    assert boundary_cost(10, 2) == 10
    assert boundary_cost(8, 2) == 6


def test_the_difference_is_exact_where_the_layers_hold_every_size() -> None:
    phi = exact_values(6, seed=1)
    game = table_game(6, seed=1)
    rng = np.random.default_rng(0)
    got = pair_difference(game, game.outputs[0], 2, 4, layers=3, rng=rng)
    assert got == pytest.approx(phi[2] - phi[4], abs=1e-12)


def test_the_drawn_difference_is_unbiased() -> None:
    """One T per open size: over 4000 draws the mean is the exact difference within 4
    standard errors of the mean."""
    phi = exact_values(7, seed=2)
    game = table_game(7, seed=2)
    rng = np.random.default_rng(1)
    draws = np.array([pair_difference(game, game.outputs[0], 0, 5, 1, rng) for _ in range(4000)])
    assert abs(draws.mean() - (phi[0] - phi[5])) < 4 * draws.std() / np.sqrt(len(draws))
    assert draws.std() > 0  # it does draw: sizes 2-4 are open with one layer


def test_a_boundary_is_one_engine_call_for_its_open_sizes() -> None:
    """At 8 documents with two layers enumerated, sizes 3-5 of T + a are open: one call
    brings their 6 new coalitions (a batch, not one call per size); the enumerated sizes
    come from the memo."""
    table = np.random.default_rng(3).normal(size=2**8)
    calls: list[int] = []

    def value(masks: np.ndarray) -> list[float]:
        calls.append(len(masks))
        return [float(table[int("".join("1" if b else "0" for b in m), 2)]) for m in masks]

    game = RealGame(8, value)
    game.evaluate(np.array([[True] * 8, [False] * 8]))
    for k in (1, 2):
        game.evaluate(layer_pairs(8, k).reshape(-1, 8))
    calls.clear()
    pair_difference(game, game.outputs[0], 1, 6, layers=2, rng=np.random.default_rng(0))
    assert calls == [6]


def test_refining_keeps_the_pair_sum_and_takes_the_paired_difference() -> None:
    """Additive game (document weights): every paired term is w_a - w_b, so one draw gives
    the exact difference. A mean whose 2nd and 3rd places are wrong comes out right."""
    weights = np.array([5.0, 3.0, 2.0, 0.5, 0.0, -1.0])
    game = RealGame(6, lambda masks: (masks.astype(float) @ weights).tolist())
    wrong = weights.copy()[:, None]
    wrong[1, 0], wrong[2, 0] = 2.4, 2.6  # 2 ahead of 1, within noise of each other
    out = refine_boundaries(game, wrong, game.outputs[0], 0, 1, np.random.default_rng(0), (2,))
    assert out[:, 0].sum() == pytest.approx(wrong[:, 0].sum())
    assert out[1, 0] == pytest.approx(3.0)
    assert out[2, 0] == pytest.approx(2.0)
    np.testing.assert_array_equal(out[[0, 3, 4, 5], 0], wrong[[0, 3, 4, 5], 0])
    assert wrong[1, 0] == 2.4  # the input is not changed


def test_boundaries_are_reserved_only_within_the_budget_and_with_a_ranking_column() -> None:
    assert full_layers(10, 128) == 2
    assert full_layers(8, 128) == 2
    # 8 documents, budget 128: 54 left after sizes 1, 7, 2 and 6; 2 x 6 for the boundaries
    assert reserved_boundaries(8, 2, 128 - 18 - 56, "log p") == (2, 3)
    assert reserved_boundaries(8, 2, 54, None) == ()
    # 10 documents, budget 128: 16 left; a boundary (10) would leave the middle 3 pairs
    assert reserved_boundaries(10, 2, 128 - 22 - 90, "log p") == ()
    assert reserved_boundaries(10, 2, 256 - 22 - 90, "log p") == (2, 3)
    assert reserved_boundaries(10, 2, 30, "log p") == ()  # 30 - 10 < 8 pairs
    # 20 documents, budget 128: a boundary costs 34 of the 86 left: not spent
    assert boundary_cost(20, 1) == 34
    assert reserved_boundaries(20, 1, 128 - 42, "log p") == ()


def test_the_layered_estimate_keeps_its_budget_and_efficiency_with_boundaries() -> None:
    game = table_game(8, seed=4)
    est = estimate(game, estimator="layered", budget=128, seed=3, focus=game.outputs[0])
    assert est.coalitions <= 128
    full, empty = game.values(np.ones((1, 8), dtype=bool)), game.values(np.zeros((1, 8), bool))
    assert est.mean[:, 0].sum() == pytest.approx(float(full[0, 0] - empty[0, 0]))
    # the middle got the budget less the boundaries' 12 coalitions; with the same seed and
    # that budget and no ranking column it draws the same pairs: only the boundaries moved
    plain = estimate(table_game(8, seed=4), estimator="layered", budget=116, seed=3)
    changed = np.flatnonzero(~np.isclose(est.mean[:, 0], plain.mean[:, 0]))
    order = np.argsort(-plain.mean[:, 0], kind="stable")
    assert 2 <= len(changed) <= 4
    assert set(changed.tolist()) <= set(order[:4].tolist())
    np.testing.assert_array_equal(est.stderr, plain.stderr)  # the regression's stderr


def test_progress_counts_against_the_whole_budget_and_never_passes_it() -> None:
    table = np.random.default_rng(6).normal(size=2**8)
    seen: list[tuple[int, int]] = []

    def value(masks: np.ndarray) -> list[float]:
        return [float(table[int("".join("1" if b else "0" for b in m), 2)]) for m in masks]

    game = RealGame(8, value, progress=lambda done, total: seen.append((done, total)))
    estimate(game, estimator="layered", budget=128, seed=0, focus=game.outputs[0])
    assert seen[-1][1] == 128
    assert all(done <= total for done, total in seen[-3:])
