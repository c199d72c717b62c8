"""Paired KernelSHAP: efficiency-constrained least squares with complement pairs.

Coalition sizes s are drawn from the Shapley kernel p(s) ~ 1/(s(n-s)), s = 1..n-1, a
uniform subset of that size is taken, and its complement is evaluated with it
(paired sampling, Covert & Lee 2021). The estimator solves
min E[(v(S) - v(empty) - z_S . phi)^2] s.t. sum(phi) = v(N) - v(empty) as a least-squares
regression on the sampled coalitions: A = mean of z z^T and b = mean of
z (v(S) - v(empty)) over them, phi = C b + d * total, where C and d come from the
constrained normal equations. Efficiency therefore holds exactly, and a game that is
additive in the features is recovered exactly once the samples span them.

The closed-form expectation of A under the kernel (the "unbiased KernelSHAP" of Covert &
Lee) is used only while the sampled A is singular (fewer coalitions than features): with
it, the noise of b is not cancelled by the same coalitions' A, and on near-additive games
at n = 10 and 15 pairs its scores ranked the exact values at Spearman 0.63 where the
regression is exact (``tests/worker/shapley/test_shapley_estimators.py``).

Standard error: each pair gives one independent sample of b; the sample covariance
of b is propagated through the linear map C (the delta method), so no bootstrap is needed.
"""

from __future__ import annotations

import numpy as np

from worker.shapley.game import Floats, Masks

ZERO_SPREAD = 1e-9  # relative to max(1, |total|): below it a stderr is rounding, not data


class KernelSampler:
    """Paired, efficiency-constrained KernelSHAP (see the module docstring)."""

    name = "kernel"

    def group_cost(self, n: int) -> int:
        return 2

    def draw(self, rng: np.random.Generator, n: int, count: int) -> Masks:
        sizes = np.arange(1, n)
        weights = 1.0 / (sizes * (n - sizes))
        s = rng.choice(sizes, size=count, p=weights / weights.sum())
        order = np.argsort(rng.random((count, n)), axis=1).argsort(axis=1)
        first = order < s[:, None]
        return np.stack([first, ~first], axis=1)

    def finish(self, groups: Masks, values: Floats, anchor: Floats) -> tuple[Floats, Floats]:
        total = anchor[0] - anchor[1]
        z = groups.astype(np.float64)
        gain = values - anchor[1]
        per_pair = np.einsum("gpi,gpk->gik", z, gain) / 2
        project, offset = constrained_solver(sampled_moments(z))
        mean = project @ per_pair.mean(axis=0) + offset[:, None] * total
        count = per_pair.shape[0]
        if count < 2:
            return mean, np.full(mean.shape, np.nan)  # one pair: no spread to measure
        spread = np.einsum("ij,gjk->gik", project, per_pair - per_pair.mean(axis=0))
        stderr = np.sqrt((spread**2).sum(axis=0) / (count - 1) / count)
        # An output every pair saw the same way (an answer no sampled coalition produced)
        # is estimated by the efficiency constraint alone: no spread, but no knowledge
        # either. Its stderr is unknown, not 0 (0 covered the exact values for 68-79% of
        # such features on real 5-document questions, docs/results.md).
        unseen = np.all(per_pair == per_pair[:1], axis=(0, 1)) & (total != 0)
        stderr[:, unseen] = np.nan
        # The same holds feature by feature: pairs can differ only in directions the
        # constrained solver projects away, leaving a spread of ~1e-17 on an estimate that
        # is off by 0.1-0.5 (a quarter of random 5-feature answer games at 7 pairs).
        # A spread that small was not measured: unknown too.
        flat = stderr <= ZERO_SPREAD * np.maximum(1.0, np.abs(total))
        stderr[flat] = np.nan
        return mean, stderr


def kernel_moments(n: int) -> Floats:
    """A = E[z z^T] under the Shapley kernel distribution (closed form)."""
    sizes = np.arange(1, n)
    p = 1.0 / (sizes * (n - sizes))
    p = p / p.sum()
    off = float((p * sizes * (sizes - 1)).sum()) / (n * (n - 1))
    a: Floats = np.full((n, n), off)
    np.fill_diagonal(a, 0.5)
    return a


def sampled_moments(z: Floats) -> Floats:
    """A = mean of z z^T over the sampled coalitions (G, 2, n), or the kernel's closed
    form when the samples do not span every feature (the sampled A is then singular)."""
    flat = z.reshape(-1, z.shape[-1])
    a: Floats = flat.T @ flat / len(flat)
    if np.linalg.matrix_rank(a) < a.shape[0]:
        return kernel_moments(a.shape[0])
    return a


def constrained_solver(a: Floats) -> tuple[Floats, Floats]:
    """(C, d) with phi = C b + d * total solving the efficiency-constrained problem with
    second moments ``a``."""
    n = a.shape[0]
    inv = np.linalg.inv(a)
    ones = np.ones(n)
    inv_ones = inv @ ones
    denom = float(ones @ inv_ones)
    project: Floats = inv - np.outer(inv_ones, ones @ inv) / denom
    offset: Floats = inv_ones / denom
    return project, offset
