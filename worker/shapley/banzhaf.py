"""Banzhaf values: least squares on a balanced design, a Lasso below it, maximum sample
reuse (MSR), and exact enumeration.

beta_i = E[v(S + i) - v(S - i)] with S uniform over all subsets. MSR (Wang & Jia 2023)
draws S ~ Bernoulli(1/2)^n and uses every sample for every feature:
beta_i ~ mean(v(S) | i in S) - mean(v(S) | i not in S), with the standard error of a
difference of two independent means. The regression fits v(S) ~ b0 + sum_{i in S} b_i by
ordinary least squares: under the uniform distribution the best additive fit's
coefficients are the Banzhaf values (Hammer and Holzman, 1992), and the fit takes the other
features' effects out of each feature's comparison, which MSR leaves in as noise. Its
coalitions come in complement pairs (S and N - S: the pair's difference is free of every
even-order interaction) from shuffled, sign-flipped Hadamard blocks (``design_block``):
each coalition is still uniform, but the features' columns are balanced and orthogonal.
On the recorded 8-document NQ tables (``bench/estimator_curve.py``, log p game, gemma /
smollm2) at 32 coalitions its LDS is 0.81 / 0.87 and its Spearman with the exact Banzhaf
values 0.91 / 0.90, where the same fit on independent draws reaches 0.79 / 0.85 and
0.85 / 0.82, MSR 0.73 / 0.79 and 0.69 / 0.64, and ContextCite at 57 ablations 0.80 / 0.87.
Its stderrs (heteroscedasticity-robust, HC1, over coalitions) are conservative on the log p
game (the exact value within 2 stderr for 0.99 of features) and cover 0.85-0.98 on the
answer game. It needs n + 1 pairs; ``auto`` runs it from n + 3 (``regression_draws``) and,
below that, a Lasso on the design's unpaired rows (``BanzhafLasso``, ``lasso.py``), where
MSR ran before. The full
and empty coalitions are evaluated (they fix v(N) - v(empty)) but are not uniform draws,
so no sampler uses them.

Banzhaf values are not Shapley values: they do not sum to v(N) - v(empty).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from worker.shapley.game import Floats, Game, Masks
from worker.shapley.lasso import lasso_fit
from worker.shapley.sampling import Estimate
from worker.shapley.subsets import all_coalitions, check_exact_budget


class BanzhafSampler:
    """Banzhaf by maximum sample reuse (see the module docstring)."""

    name = "banzhaf-msr"

    def group_cost(self, n: int) -> int:
        return 1

    def draw(self, rng: np.random.Generator, n: int, count: int) -> Masks:
        return rng.random((count, 1, n)) < 0.5

    def finish(self, groups: Masks, values: Floats, anchor: Floats) -> tuple[Floats, Floats]:
        inside = groups[:, 0, :].astype(np.float64)
        vals = values[:, 0, :]
        mean_in, var_in, n_in = _side(inside, vals)
        mean_out, var_out, n_out = _side(1.0 - inside, vals)
        mean = mean_in - mean_out
        stderr = np.sqrt(var_in / np.maximum(n_in, 1) + var_out / np.maximum(n_out, 1))
        thin = np.minimum(n_in, n_out) < 2
        return mean, np.where(thin, np.nan, stderr)  # unknown: fewer than two per side


class _BlockStream:
    """Rows of shuffled balanced blocks (``design_block``), handed out in order: holds the
    rest of the current block between draws, so one instance serves one estimate."""

    def __init__(self) -> None:
        self._queue: Masks = np.zeros((0, 0), dtype=np.bool_)

    def _rows(self, rng: np.random.Generator, n: int, count: int) -> Masks:
        queue = self._queue.reshape(-1, n)
        while len(queue) < count:
            queue = np.concatenate([queue, design_block(rng, n)])
        self._queue = queue[count:]
        out: Masks = queue[:count]
        return out


class BanzhafLasso(_BlockStream):
    """Banzhaf by a Lasso fit on unpaired rows of balanced blocks (``lasso.py`` says why):
    with few complement pairs a pair's two rows give the additive fit one equation
    between them (under an additive game v(S) + v(N - S) is the same for every pair), so
    the rows go unpaired. The penalty shrinks scores toward 0 and no standard error is
    measured (NaN)."""

    name = "banzhaf-lasso"

    def group_cost(self, n: int) -> int:
        return 1

    def draw(self, rng: np.random.Generator, n: int, count: int) -> Masks:
        return self._rows(rng, n, count)[:, None, :]

    def finish(self, groups: Masks, values: Floats, anchor: Floats) -> tuple[Floats, Floats]:
        coef = lasso_fit(groups[:, 0, :], values[:, 0, :])
        return coef, np.full_like(coef, np.nan)


class BanzhafRegression(_BlockStream):
    """Banzhaf by least squares on complement pairs of balanced blocks (module docstring)."""

    name = "banzhaf-regression"

    def group_cost(self, n: int) -> int:
        return 2

    def draw(self, rng: np.random.Generator, n: int, count: int) -> Masks:
        first = self._rows(rng, n, count)
        return np.stack([first, ~first], axis=1)

    def finish(self, groups: Masks, values: Floats, anchor: Floats) -> tuple[Floats, Floats]:
        rows = groups.reshape(-1, groups.shape[2]).astype(np.float64)
        design = np.hstack([np.ones((len(rows), 1)), rows])
        vals = values.reshape(len(rows), -1)
        inverse: Floats = np.linalg.pinv(design.T @ design).astype(np.float64)
        coef = inverse @ design.T @ vals
        return coef[1:], _robust_stderr(design, vals - design @ coef, inverse)[1:]


def design_block(rng: np.random.Generator, n: int) -> Masks:
    """One block of a balanced design: the rows of a Sylvester Hadamard matrix of the
    smallest order with n non-constant columns, n of those picked at random, each column's
    sign flipped at random, the rows shuffled. Each row alone is uniform over all
    coalitions (the flips are independent fair coins), so the fit stays unbiased; within
    the block every feature is kept in exactly half the rows and any two features' columns
    are orthogonal, which independent draws only approach."""
    order = 2
    while order - 1 < n:
        order *= 2
    hadamard = np.ones((1, 1), dtype=np.int8)
    while len(hadamard) < order:
        hadamard = np.block([[hadamard, hadamard], [hadamard, -hadamard]])
    columns = rng.choice(np.arange(1, order), size=n, replace=False)
    signs = rng.choice(np.array([-1, 1], dtype=np.int8), size=n)
    block: Masks = hadamard[:, columns] * signs > 0
    return block[rng.permutation(order)]


def regression_draws(n: int) -> int:
    """Coalitions the regression needs: n + 3 complement pairs. Its stderr needs twice its
    n + 1 coefficients (n + 1 residual degrees of freedom); two pairs more because with
    fewer the fit ranked the exact values of the recorded log p games below the Lasso on
    the same budget (Spearman with exact Banzhaf, gemma / smollm2, at n + 1 pairs:
    8 documents 0.70 / 0.73 against 0.81 / 0.79, 10 documents 0.66 / 0.69 against
    0.77 / 0.82; at n + 2 pairs: 0.79 / 0.78 against 0.81 / 0.79 and 0.73 / 0.73 against
    0.78 / 0.81), and was level from n + 3 (``docs/results.md``, "Banzhaf below the
    regression"). The regression also measures stderrs; the Lasso does not."""
    return 2 * (n + 3)


def _robust_stderr(design: Floats, residual: Floats, inverse: Floats) -> Floats:
    """HC1 standard errors (coefficients, K): the sandwich estimator, robust to the unequal
    spread of v around its additive fit. NaN (unknown) below two coalitions per coefficient:
    with fewer residual degrees of freedom the spread is not measured, and an unknown stderr
    also keeps adaptive stopping from acting (found on NQ: a Banzhaf job at budget 32 over
    10 documents stopped after 8 pairs, its minor documents' scores at +-8 nats of noise).
    Only the sandwich's diagonal is formed: with A = (X'X)^-1 X', var(b_j) =
    sum_g A_jg^2 r_g^2, in O(p rows K) memory (the full p x p sandwich per answer would not
    fit at the budget cap)."""
    rows, p = design.shape
    if rows < 2 * p:
        return np.full((p, residual.shape[1]), np.nan)
    weights = inverse @ design.T
    variance = weights**2 @ residual**2 * rows / (rows - p)
    out: Floats = np.sqrt(np.maximum(variance, 0.0))
    return out


def _side(weights: Floats, vals: Floats) -> tuple[Floats, Floats, Floats]:
    """Mean, sample variance and count of values on one side of every feature."""
    count = weights.sum(axis=0)[:, None]
    safe = np.maximum(count, 1)
    mean = weights.T @ vals / safe
    square = weights.T @ vals**2 / safe
    var = np.maximum(square - mean**2, 0.0) * safe / np.maximum(count - 1, 1)
    return mean, var, count


def banzhaf_exact(game: Game, budget: int) -> Estimate:
    """Exact Banzhaf values by enumerating all 2**n coalitions (stderr 0)."""
    n = game.n_features
    check_exact_budget(n, budget)
    game.budget = budget
    codes, masks = all_coalitions(n)
    values = game.values(masks)
    mean = np.stack([_gain(codes, values, i).mean(axis=0) for i in range(n)])
    return Estimate(
        mean, np.zeros_like(mean), game.evaluations, list(game.outputs), "banzhaf-exact"
    )


def _gain(codes: npt.NDArray[np.int64], values: Floats, i: int) -> Floats:
    """v(S + i) - v(S) for every coalition S without feature i."""
    without = codes[(codes & (1 << i)) == 0]
    out: Floats = values[without | (1 << i)] - values[without]
    return out
