"""Banzhaf by regression and by MSR against exact values on games with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from tests.worker.shapley.toy_games import additive, glove, real_game
from worker.shapley.banzhaf import BanzhafRegression, BanzhafSampler, design_block
from worker.shapley.estimators import estimate, resolve
from worker.shapley.game import RealGame
from worker.shapley.sampling import run_sampler

Floats = np.ndarray


def saturating(n: int, seed: int) -> RealGame:
    """log(sum of kept weights + 0.1): strong interactions (each weight matters less when
    others are kept), like a log-probability that saturates."""
    weights = np.random.default_rng(seed).exponential(size=n)
    return real_game(lambda m: np.log(m.astype(np.float64) @ weights + 0.1), n)


def exact(game: RealGame) -> Floats:
    return estimate(game, method="banzhaf", budget=2**game.n_features).mean[:, 0]


def test_auto_fits_the_regression_from_two_pairs_more_than_twice_its_coefficients() -> None:
    # n = 10: 11 coefficients, 26 draws, plus the full and empty coalitions
    assert resolve("banzhaf", "auto", 10, 27) == "banzhaf-lasso"
    assert resolve("banzhaf", "auto", 10, 28) == "banzhaf-regression"
    assert resolve("banzhaf", "auto", 9, 100) == "banzhaf-regression"
    assert resolve("banzhaf", "auto", 6, 64) == "banzhaf-exact"


def test_regression_recovers_an_additive_game_exactly() -> None:
    weights = np.linspace(-1.0, 2.0, 10)
    got = estimate(real_game(additive(weights), 10), method="banzhaf", budget=40, seed=3)
    assert got.method == "banzhaf-regression"
    np.testing.assert_allclose(got.mean[:, 0], weights, atol=1e-9)
    np.testing.assert_allclose(got.stderr[:, 0], 0.0, atol=1e-9)


def test_regression_is_closer_to_exact_than_msr_on_an_interacting_game() -> None:
    """The reason it is the default: at 64 coalitions over 10 features, the mean absolute
    error against the exact Banzhaf values, over 20 seeds and 5 games (measured: 0.22 of
    MSR's)."""
    errors: dict[str, list[float]] = {"regression": [], "msr": []}
    for game_seed in range(5):
        truth = exact(saturating(10, game_seed))
        for seed in range(20):
            for name, sampler in (("regression", BanzhafRegression()), ("msr", BanzhafSampler())):
                got = _run(saturating(10, game_seed), sampler, 64, seed)
                errors[name].append(float(np.abs(got[0] - truth).mean()))
    assert np.mean(errors["regression"]) < 0.4 * np.mean(errors["msr"])


def test_regression_stderr_covers_the_exact_values_conservatively() -> None:
    """HC1 stderrs over coalitions ignore the balance of the design, so they overstate the
    error (the exact value within 2 stderr for more than 95% of features) but not wildly:
    the mean stderr is under twice the root-mean-square error."""
    hits, errors, stderrs = [], [], []
    for game_seed in range(5):
        truth = exact(saturating(8, game_seed))
        for seed in range(40):
            mean, stderr = _run(saturating(8, game_seed), BanzhafRegression(), 64, seed)
            hits.extend(np.abs(mean - truth) <= 2 * stderr)
            errors.extend(mean - truth)
            stderrs.extend(stderr)
    assert np.mean(hits) >= 0.95
    assert np.mean(stderrs) < 2 * np.sqrt(np.mean(np.square(errors)))


def test_a_design_block_is_balanced_and_orthogonal() -> None:
    for n in (3, 7, 8, 10, 20):
        block = design_block(np.random.default_rng(n), n)
        order = len(block)
        assert order == min(2**k for k in range(1, 7) if 2**k - 1 >= n)
        signs = np.where(block, 1, -1)
        np.testing.assert_array_equal(signs.sum(axis=0), 0)
        np.testing.assert_array_equal(signs.T @ signs, order * np.eye(n))


def test_draws_are_complement_pairs_that_continue_their_block() -> None:
    sampler, rng = BanzhafRegression(), np.random.default_rng(1)
    first, second = sampler.draw(rng, 10, 5), sampler.draw(rng, 10, 11)
    assert first.shape == (5, 2, 10)
    assert second.shape == (11, 2, 10)
    pairs = np.concatenate([first, second])
    np.testing.assert_array_equal(pairs[:, 1], ~pairs[:, 0])
    signs = np.where(pairs[:, 0], 1, -1)  # 16 draws across two calls: one whole block
    np.testing.assert_array_equal(signs.T @ signs, 16 * np.eye(10))


def test_each_drawn_coalition_is_uniform() -> None:
    """Over many blocks every feature is kept half the time, independently of the others
    (so the fit estimates the Banzhaf values, not a design artefact)."""
    rng = np.random.default_rng(3)
    rows = np.concatenate([design_block(rng, 6)[:1] for _ in range(4000)]).astype(float)
    np.testing.assert_allclose(rows.mean(axis=0), 0.5, atol=0.03)
    together = rows.T @ rows / len(rows)
    np.testing.assert_allclose(together[~np.eye(6, dtype=bool)], 0.25, atol=0.03)


def test_regression_close_to_exact_on_the_glove_game() -> None:
    truth = exact(real_game(glove(4, 6), 10))
    got = estimate(real_game(glove(4, 6), 10), method="banzhaf", budget=600, seed=5)
    assert got.method == "banzhaf-regression"
    assert np.abs(got.mean[:, 0] - truth).max() < 0.05


def test_no_stderr_below_two_coalitions_per_coefficient() -> None:
    rng = np.random.default_rng(0)
    for pairs, known in ((4, False), (4, False), (5, True)):  # 4 features: 5 coefficients
        groups = BanzhafRegression().draw(rng, 4, pairs)
        values = rng.normal(size=(pairs, 2, 1))
        mean, stderr = BanzhafRegression().finish(groups, values, np.zeros((2, 1)))
        assert mean.shape == stderr.shape == (4, 1)
        assert np.isfinite(stderr).all() == known


def test_adaptive_stopping_waits_for_n_plus_one_pairs() -> None:
    """A game one feature dominates: the stopping rule would hold after a few pairs, but
    not before the regression's stderr is known (n + 1 pairs)."""
    from worker.shapley.stopping import top_separated

    weights = np.array([30.0, *np.linspace(-0.5, 0.5, 9)])
    game = real_game(lambda m: m.astype(np.float64) @ weights + 0.3 * m[:, 1] * m[:, 2], 10)
    got = estimate(game, method="banzhaf", budget=128, seed=1, separated=top_separated("value"))
    assert got.stopped_early
    assert 2 + 2 * 11 <= got.coalitions < 128


def _run(game: RealGame, sampler: BanzhafSampler, budget: int, seed: int) -> tuple[Floats, Floats]:
    got = run_sampler(game, sampler, budget, np.random.default_rng(seed))
    return got.mean[:, 0], got.stderr[:, 0]


@pytest.mark.parametrize("budget", [24, 64])
def test_budget_is_a_hard_cap(budget: int) -> None:
    got = estimate(saturating(10, 1), method="banzhaf", budget=budget, seed=2)
    assert got.coalitions <= budget


def test_robust_stderr_is_the_diagonal_of_the_full_sandwich() -> None:
    from worker.shapley.banzhaf import _robust_stderr

    rng = np.random.default_rng(0)
    design = np.hstack([np.ones((50, 1)), rng.random((50, 6)) < 0.5]).astype(float)
    residual = rng.normal(size=(50, 3))
    inverse = np.linalg.pinv(design.T @ design)
    for k in range(3):
        meat = (design * residual[:, k : k + 1] ** 2).T @ design * 50 / (50 - 7)
        expected = np.sqrt(np.diag(inverse @ meat @ inverse))
        np.testing.assert_allclose(_robust_stderr(design, residual, inverse)[:, k], expected)


def test_many_features_at_the_budget_cap() -> None:
    """600 features, 1300 coalitions: the regression runs (no p x p sandwich per answer)
    and recovers an additive game."""
    weights = np.random.default_rng(4).normal(size=600)
    got = estimate(real_game(additive(weights), 600), method="banzhaf", budget=1300, seed=1)
    assert got.method == "banzhaf-regression"
    np.testing.assert_allclose(got.mean[:, 0], weights, atol=1e-8)
