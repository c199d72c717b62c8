"""Layered KernelSHAP: the Shapley kernel's heaviest sizes enumerated, the rest sampled.

The Shapley kernel weighs coalition sizes by 1/(s(n-s)): sizes 1 and n-1 carry the most
(53% of the mass at n = 6, 36% at n = 10), and paired KernelSHAP (``kernel``), which draws
sizes at random, rarely sees all of them on a small budget. This estimator spends its first
2n coalitions on that layer, every {i} with its complement N without i (with the full and
empty coalitions, 2n + 2), and samples complement pairs of the middle sizes 2 .. n-2 with
the rest of the budget. The regression is KernelSHAP's, efficiency-constrained, with the
second moments A and b of each part weighed by its kernel mass (the enumerated layer's
exactly, the middle's by its sample means), as the shap package fills whole sizes first.

Why: the layer alone measures leave-one-out and leave-one-in for every feature, whose mean
is the Shapley value exactly for games with interactions of order at most two. On the
recorded 6-document NQ tables (``bench/estimator_curve.py``, docs/results.md) it ranked
the exact values of the log p(y) game at Spearman 0.91 / 0.96 (gemma / smollm2) with 14
coalitions, where paired KernelSHAP reached 0.64 / 0.71 and ContextCite's surrogate at 32
ablations 0.84 / 0.88.

Standard error: the layer is enumerated (no sampling error); each middle pair gives one
independent sample of the middle's b, propagated through the solver (the delta method) and
scaled by the middle's mass. With fewer than two middle pairs the stderr is unknown (NaN).
"""

from __future__ import annotations

import numpy as np

from worker.shapley.errors import ShapleyInputError
from worker.shapley.game import Floats, Game, Masks
from worker.shapley.kernel import ZERO_SPREAD, constrained_solver
from worker.shapley.sampling import (
    MAX_DRAW_FACTOR,
    Estimate,
    admit,
    evaluate_anchors,
    total_of,
)

NAME = "layered"


def layer_cost(n: int) -> int:
    """Coalitions the layer needs with the full and empty ones."""
    return 2 * n + 2


def layer_pairs(n: int) -> Masks:
    """(n, 2, n): every {i} with its complement."""
    eye = np.eye(n, dtype=np.bool_)
    return np.stack([eye, ~eye], axis=1)


def layer_mass(n: int) -> float:
    """The kernel's probability of sizes 1 and n-1 (all of it for n <= 3)."""
    sizes = np.arange(1, n)
    kernel = 1.0 / (sizes * (n - sizes))
    return float(kernel[[0, -1]].sum() / kernel.sum()) if n > 3 else 1.0


def draw_middle(rng: np.random.Generator, n: int, count: int) -> Masks:
    """``count`` complement pairs of sizes 2 .. n-2 drawn by the kernel (n > 3)."""
    sizes = np.arange(2, n - 1)
    weights = 1.0 / (sizes * (n - sizes))
    s = rng.choice(sizes, size=count, p=weights / weights.sum())
    first = np.argsort(rng.random((count, n)), axis=1).argsort(axis=1) < s[:, None]
    return np.stack([first, ~first], axis=1)


def shapley_layered(game: Game, budget: int, rng: np.random.Generator) -> Estimate:
    n = game.n_features
    if budget < layer_cost(n):
        raise ShapleyInputError(
            f"budget {budget} is too small for the layered estimator over {n} features "
            f"(needs {layer_cost(n)}: every feature alone and left out, plus the full and "
            "empty coalitions); raise the budget or use the kernel estimator"
        )
    evaluate_anchors(game, budget)
    layer = layer_pairs(n)
    game.evaluate(layer.reshape(-1, n))
    middle = _sample_middle(game, budget, rng) if n > 3 else np.zeros((0, 2, n), np.bool_)
    mean, stderr = _finish(game, layer, middle)
    return Estimate(mean, stderr, game.evaluations, list(game.outputs), NAME, len(middle))


def _sample_middle(game: Game, budget: int, rng: np.random.Generator) -> Masks:
    n, kept, drawn = game.n_features, [], 0
    while drawn < MAX_DRAW_FACTOR * budget and budget - game.evaluations >= 2:
        count = (budget - game.evaluations) // 2
        batch = draw_middle(rng, n, count)
        drawn += 2 * count
        fits = admit(game, batch, budget)
        if fits:
            game.evaluate(batch[:fits].reshape(-1, n))
            kept.append(batch[:fits])
        if fits < count:
            break
    return np.concatenate(kept) if kept else np.zeros((0, 2, n), np.bool_)


def _part(game: Game, pairs: Masks) -> tuple[Floats, Floats]:
    """Second moments of one part: A (n, n) over its coalitions and b per pair (G, n, K)."""
    n = game.n_features
    z = pairs.astype(np.float64)
    empty = game.values(np.zeros((1, n), dtype=np.bool_))[0]
    gains = game.values(pairs.reshape(-1, n)).reshape(len(pairs), 2, -1) - empty
    flat = z.reshape(-1, n)
    return flat.T @ flat / len(flat), np.einsum("gpi,gpk->gik", z, gains) / 2


def _finish(game: Game, layer: Masks, middle: Masks) -> tuple[Floats, Floats]:
    total = total_of(game)
    a, per_pair = _part(game, layer)
    b = per_pair.mean(axis=0)
    mass = layer_mass(game.n_features) if len(middle) else 1.0
    if len(middle):
        a_mid, per_mid = _part(game, middle)
        a = mass * a + (1 - mass) * a_mid
        b = mass * b + (1 - mass) * per_mid.mean(axis=0)
    project, offset = constrained_solver(a)
    mean: Floats = project @ b + offset[:, None] * total
    if len(middle) < 2:
        return mean, np.full(mean.shape, np.nan)  # nothing sampled twice: no spread
    spread = (1 - mass) * np.einsum("ij,gjk->gik", project, per_mid - per_mid.mean(axis=0))
    count = len(middle)
    stderr: Floats = np.sqrt((spread**2).sum(axis=0) / (count - 1) / count)
    stderr[stderr <= ZERO_SPREAD * np.maximum(1.0, np.abs(total))] = np.nan
    return mean, stderr
