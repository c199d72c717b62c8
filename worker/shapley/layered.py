"""Layered KernelSHAP: the Shapley kernel's heaviest sizes enumerated, the rest sampled.

The Shapley kernel weighs coalition sizes by 1/(s(n-s)): sizes 1 and n-1 carry the most
(53% of the mass at n = 6, 36% at n = 10), and paired KernelSHAP (``kernel``), which draws
sizes at random, rarely sees all of them on a small budget. This estimator spends its first
2n coalitions on that layer, every {i} with its complement N without i (with the full and
empty coalitions, 2n + 2), and samples complement pairs of the middle sizes 2 .. n-2 with
the rest of the budget. Further layers (sizes 2 and n-2, then 3 and n-3, ...) are enumerated
too while they fit the budget whole, and the middle is sampled from the sizes left, as the
shap package fills whole sizes first; with every layer in the budget the result is exact.
The regression is KernelSHAP's, efficiency-constrained, with the second moments A and b of
each part weighed by its kernel mass (enumerated layers exactly, the middle by its sample
means). On the 6-document tables, enumerating the second layer at budget 48 raised the log p
game's Spearman from 0.95 to 0.97 (gemma; smollm2 0.98 either way).

Why: the layer alone measures leave-one-out and leave-one-in for every feature, whose mean
is the Shapley value exactly for games with interactions of order at most two. On the
recorded 6-document NQ tables (``bench/estimator_curve.py``, docs/results.md) it ranked
the exact values of the log p(y) game at Spearman 0.91 / 0.96 (gemma / smollm2) with 14
coalitions, where paired KernelSHAP reached 0.64 / 0.71 and ContextCite's surrogate at 32
ablations 0.84 / 0.88.

Where the budget leaves room after the layers (the middle keeps at least
``MIN_STOP_SAMPLES`` pairs), coalitions go to the ranking's open boundaries
(``boundary.py``: the 2nd and 3rd documents' score difference from paired draws, then
the 3rd and 4th's) before the middle gets the rest; on the exact NQ tables the 2nd and
3rd documents had swapped in some draws.

Standard error: the layer is enumerated (no sampling error); each middle pair gives one
independent sample of the middle's b, propagated through the solver (the delta method) and
scaled by the middle's mass. With fewer than ``MIN_SPREAD_PAIRS`` middle pairs the stderr
is unknown (NaN).

Below the first layer's cost (from n + 2 coalitions) it runs the *partial* first layer
(``layered-partial``): every feature left out, then alone for as many features as the
budget has room, those with the largest leave-one-out in the ranking's column (``focus``)
first; a feature never evaluated alone is given its leave-one-out plus the mean difference
between alone and left out of the features that were. Each score is the mean of the two
marginals (with the whole layer: exact for games with at most pairwise interactions),
shifted equally so that the scores sum to v(N) - v(empty); the stderr is unknown. On the
recorded NQ tables (8 and 10 documents, and the sentence games) it ranked the exact values
of the log p game at Spearman 0.58-0.80 from 12-16 coalitions at 8 documents, where paired
KernelSHAP, which ``auto`` ran there before, reached 0.45-0.53, below leave-one-out itself
(0.53-0.56 from 9; docs/results.md, "Below the first layer").
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, replace

import numpy as np

from worker.shapley import boundary
from worker.shapley.boundary import boundary_cost, refine_boundaries
from worker.shapley.errors import ShapleyInputError
from worker.shapley.game import Floats, Game, Masks
from worker.shapley.kernel import ZERO_SPREAD, constrained_solver
from worker.shapley.sampling import (
    MIN_STOP_SAMPLES,
    Estimate,
    Separated,
    evaluate_anchors,
    run_sampler,
    total_of,
)

NAME = "layered"
BOUNDARIES = boundary.BOUNDARIES
"""The ranking boundaries refined when the budget allows (``()``: none, as before)."""
DESIGN = "layers, boundaries, middle"
"""What ``layered`` spends its budget on (recorded by evaluation runs, so that a run never
mixes two designs; before 2026-12-05 it had no boundaries: "layers, middle")."""
PARTIAL = "layered-partial"
MIN_SPREAD_PAIRS = 3
"""Middle pairs a reported stderr needs. On the recorded real-model games cut to 5
documents (``bench/coverage_tables.py``, 50 tables x 10 seeds), the log p scores lay within
2 stderr of the exact values for 0.80 / 0.83 of features (gemma / smollm2) with 2 pairs (one
degree of freedom: a stderr that noisy covers like Student's t with 1 df), 0.92 / 0.94 with
3, 0.93 / 0.95 with 4."""


def layer_cost(n: int) -> int:
    """Coalitions the first layer needs with the full and empty ones."""
    return 2 * n + 2


def partial_cost(n: int) -> int:
    """The least budget: every feature left out, with the full and empty coalitions."""
    return n + 2


def size_cost(n: int, k: int) -> int:
    """Coalitions of layer ``k``: every coalition of size k and of size n - k."""
    return math.comb(n, k) * (1 if 2 * k == n else 2)


def full_layers(n: int, budget: int) -> int:
    """How many layers (sizes k and n - k, k = 1, 2, ...) fit the budget whole, after the
    full and empty coalitions; at least the first."""
    used, k = 2 + size_cost(n, 1), 1
    while 2 * (k + 1) <= n and used + size_cost(n, k + 1) <= budget:
        k += 1
        used += size_cost(n, k)
    return k


def layer_pairs(n: int, k: int = 1) -> Masks:
    """(P, 2, n): every coalition of size k with its complement (for k = n/2, each pair
    once)."""
    first = [c for c in itertools.combinations(range(n), k) if 2 * k < n or 0 in c]
    keep = np.zeros((len(first), n), dtype=np.bool_)
    for row, members in enumerate(first):
        keep[row, list(members)] = True
    return np.stack([keep, ~keep], axis=1)


def _kernel(n: int) -> Floats:
    """The Shapley kernel's probability of each size 0 .. n (0 for the anchors)."""
    sizes = np.arange(n + 1)
    weights = np.zeros(n + 1)
    weights[1:n] = 1.0 / (sizes[1:n] * (n - sizes[1:n]))
    kernel: Floats = weights / weights.sum()
    return kernel


def layer_mass(n: int, k: int = 1) -> float:
    """The kernel's probability of sizes k and n - k (all of it for n <= 3 and k = 1)."""
    kernel = _kernel(n)
    return float(kernel[k] + (kernel[n - k] if 2 * k != n else 0.0))


def draw_middle(rng: np.random.Generator, n: int, count: int, low: int = 2) -> Masks:
    """``count`` complement pairs of sizes ``low`` .. n - low drawn by the kernel."""
    sizes = np.arange(low, n - low + 1)
    weights = 1.0 / (sizes * (n - sizes))
    s = rng.choice(sizes, size=count, p=weights / weights.sum())
    first = np.argsort(rng.random((count, n)), axis=1).argsort(axis=1) < s[:, None]
    return np.stack([first, ~first], axis=1)


def shapley_layered(
    game: Game,
    budget: int,
    rng: np.random.Generator,
    target_stderr: float | None = None,
    separated: Separated | None = None,
    focus: str | None = None,
) -> Estimate:
    """The layers that fit, then middle pairs through the shared sampling loop (so the
    target stderr and adaptive stopping act on the middle as on any sampler); below the
    first layer's cost, the partial first layer (``focus``: the output column whose
    largest leave-one-out features are evaluated alone first)."""
    n = game.n_features
    if budget < partial_cost(n):
        raise ShapleyInputError(
            f"budget {budget} is too small for the layered estimator over {n} features "
            f"(needs {partial_cost(n)}: every feature left out, plus the full and empty "
            "coalitions); raise the budget or use the kernel estimator"
        )
    if budget < layer_cost(n):
        return partial_layer(game, budget, rng, focus)
    game.budget = budget
    evaluate_anchors(game, budget)
    layers = [layer_pairs(n, k) for k in range(1, full_layers(n, budget) + 1)]
    for layer in layers:
        game.evaluate(layer.reshape(-1, n))
    middle = MiddleSampler(game, layers)
    if 2 * middle.low <= n and budget - game.evaluations >= 2:
        boundaries = reserved_boundaries(n, len(layers), budget - game.evaluations, focus)
        reserve = len(boundaries) * boundary_cost(n, len(layers))
        found = run_sampler(game, middle, budget - reserve, rng, target_stderr, separated)
        game.budget = budget  # progress is reported against the whole budget
        if not boundaries or focus not in found.answers:
            return found
        column = found.answers.index(focus)
        mean = refine_boundaries(game, found.mean, focus, column, len(layers), rng, boundaries)
        return replace(found, mean=mean, coalitions=game.evaluations)
    mean, stderr = _finish(game, layers, np.zeros((0, 2, n), np.bool_))
    return Estimate(mean, stderr, game.evaluations, list(game.outputs), NAME)


def reserved_boundaries(n: int, layers: int, left: int, focus: str | None) -> tuple[int, ...]:
    """The ranking boundaries (``boundary.BOUNDARIES``) the budget left after the layers
    pays for; none without a ranking column (``focus``). The middle keeps at least
    ``MIN_STOP_SAMPLES`` pairs (with 3, as at 10 documents and budget 128, the log p
    stderr covered the exact values for 0.82 of gemma's features instead of 0.97), and a
    boundary costs at most an eighth of what is left (at 20 documents one costs 34
    coalitions: untested, so not spent)."""
    cost = boundary_cost(n, layers)
    if focus is None or cost == 0 or 8 * cost > left:
        return ()
    fits = [k for k in BOUNDARIES if k < n]
    while fits and left - len(fits) * cost < 2 * MIN_STOP_SAMPLES:
        fits.pop()
    return tuple(fits)


def partial_layer(
    game: Game, budget: int, rng: np.random.Generator, focus: str | None = None
) -> Estimate:
    """Every feature left out, then alone while the budget lasts (see the module docstring);
    without a ``focus`` column the features evaluated alone are drawn at random."""
    n = game.n_features
    game.budget = budget
    evaluate_anchors(game, budget)
    out = layer_pairs(n)[:, 1]  # row i: every feature but i
    game.evaluate(out)
    order = rng.permutation(n)
    if focus in game.outputs:
        column = _left_out(game, out)[:, game.outputs.index(focus)]
        order = order[np.argsort(-column[order], kind="stable")]  # ties in random order
    alone = np.sort(order[: max(0, budget - game.evaluations)])
    singles = np.eye(n, dtype=np.bool_)
    game.evaluate(singles[alone])
    left_out = _left_out(game, out)  # read again: answers first seen alone are columns too
    gains = left_out.copy()
    if len(alone):
        empty = game.values(np.zeros((1, n), dtype=np.bool_))[0]
        measured = game.values(singles[alone]) - empty
        gains += (measured - left_out[alone]).mean(axis=0)
        gains[alone] = measured
    mean = (left_out + gains) / 2
    mean += (total_of(game) - mean.sum(axis=0)) / n
    return Estimate(
        mean, np.full(mean.shape, np.nan), game.evaluations, list(game.outputs), PARTIAL
    )


def _left_out(game: Game, out: Masks) -> Floats:
    """v(N) - v(N without i) per feature (rows of ``out``) and output column."""
    full = game.values(np.ones((1, game.n_features), dtype=np.bool_))[0]
    left: Floats = full - game.values(out)
    return left


@dataclass
class MiddleSampler:
    """Complement pairs of the sizes no whole layer covers, finished together with the
    enumerated layers (whose values it reads from the game)."""

    game: Game
    layers: list[Masks]
    name: str = NAME

    @property
    def low(self) -> int:
        """The smallest size left to sample."""
        return len(self.layers) + 1

    def group_cost(self, n: int) -> int:
        return 2

    def draw(self, rng: np.random.Generator, n: int, count: int) -> Masks:
        return draw_middle(rng, n, count, self.low)

    def finish(self, groups: Masks, values: Floats, anchor: Floats) -> tuple[Floats, Floats]:
        return _finish(self.game, self.layers, groups)


def _part(game: Game, pairs: Masks) -> tuple[Floats, Floats]:
    """Second moments of one part: A (n, n) over its coalitions and b per pair (G, n, K)."""
    n = game.n_features
    z = pairs.astype(np.float64)
    empty = game.values(np.zeros((1, n), dtype=np.bool_))[0]
    gains = game.values(pairs.reshape(-1, n)).reshape(len(pairs), 2, -1) - empty
    flat = z.reshape(-1, n)
    return flat.T @ flat / len(flat), np.einsum("gpi,gpk->gik", z, gains) / 2


def _finish(game: Game, layers: list[Masks], middle: Masks) -> tuple[Floats, Floats]:
    """The kernel-weighted regression: each enumerated layer's moments weighed by its
    kernel mass, the middle's by the rest (renormalised over what was evaluated)."""
    n, total = game.n_features, total_of(game)
    masses = [layer_mass(n, k) for k in range(1, len(layers) + 1)]
    rest = max(0.0, 1.0 - sum(masses)) if len(middle) else 0.0
    scale = sum(masses) + rest
    parts = [(m / scale, *_part(game, pairs)) for m, pairs in zip(masses, layers, strict=True)]
    if len(middle):
        parts.append((rest / scale, *_part(game, middle)))
    a = sum(mass * a_part for mass, a_part, _ in parts)
    b = sum(mass * per_pair.mean(axis=0) for mass, _, per_pair in parts)
    project, offset = constrained_solver(np.asarray(a))
    mean: Floats = project @ b + offset[:, None] * total
    if len(middle) < MIN_SPREAD_PAIRS:
        return mean, np.full(mean.shape, np.nan)  # too few pairs to measure a spread
    mass, _, per_mid = parts[-1]
    spread = mass * np.einsum("ij,gjk->gik", project, per_mid - per_mid.mean(axis=0))
    count = len(middle)
    stderr: Floats = np.sqrt((spread**2).sum(axis=0) / (count - 1) / count)
    stderr[stderr <= ZERO_SPREAD * np.maximum(1.0, np.abs(total))] = np.nan
    return mean, stderr
