"""Exact Shapley values by enumerating every coalition: the test oracle.

phi_i = sum over S not containing i of |S|! (n - |S| - 1)! / n! * (v(S + i) - v(S)).
Costs 2**n coalitions, so it is the right choice only when those fit the budget
(n up to about 12-14 with typical budgets). Standard error is zero.
"""

from __future__ import annotations

from math import comb

import numpy as np
import numpy.typing as npt

from worker.shapley.game import Floats, Game
from worker.shapley.sampling import Estimate
from worker.shapley.subsets import all_coalitions, check_exact_budget


def shapley_exact(game: Game, budget: int) -> Estimate:
    """Exact Shapley values of ``game`` (all 2**n coalitions must fit in ``budget``)."""
    n = game.n_features
    check_exact_budget(n, budget)
    game.budget = budget
    codes, masks = all_coalitions(n)
    values = game.values(masks)
    sizes = masks.sum(axis=1)
    weights = np.array([1.0 / (n * comb(n - 1, s)) for s in range(n)])
    mean = np.stack([_feature(codes, sizes, values, weights, i) for i in range(n)])
    return Estimate(mean, np.zeros_like(mean), game.evaluations, list(game.outputs), "exact")


def _feature(
    codes: npt.NDArray[np.int64],
    sizes: npt.NDArray[np.int64],
    values: Floats,
    weights: Floats,
    i: int,
) -> Floats:
    without = codes[(codes & (1 << i)) == 0]
    gain = values[without | (1 << i)] - values[without]
    out: Floats = (weights[sizes[without]][:, None] * gain).sum(axis=0)
    return out
