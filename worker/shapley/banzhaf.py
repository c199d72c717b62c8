"""Banzhaf values: maximum sample reuse (MSR) sampling and exact enumeration.

beta_i = E[v(S + i) - v(S - i)] with S uniform over all subsets. MSR (Wang & Jia
2023) draws S ~ Bernoulli(1/2)^n once and uses every sample for every feature:
beta_i ~ mean(v(S) | i in S) - mean(v(S) | i not in S), with the standard error of a
difference of two independent means. The full and empty coalitions are evaluated
(they fix v(N) - v(empty)) but are not Bernoulli draws, so they are not used.

Banzhaf values are not Shapley values: they do not sum to v(N) - v(empty).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from worker.shapley.game import Floats, Game, Masks
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
