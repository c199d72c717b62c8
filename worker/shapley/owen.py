"""Owen (multilinear-extension) sampling with complement pairs.

phi_i = integral over q in (0,1) of E[v(S + i) - v(S - i)], S ~ Bernoulli(q)^n
(Owen 1972; Okhrati & Lipani 2021). A group draws q (stratified within each draw),
S ~ Bernoulli(q), evaluates S and, for every feature, S with that feature flipped;
the complement of S (a Bernoulli(1 - q) draw) and its flips are evaluated too, and
the feature's sample is the mean of the two marginals. 2(n + 1) coalitions per group.

Efficiency does not hold per sample, so the estimate is adjusted: the gap
v(N) - v(empty) - sum_i mean_i is spread over features in proportion to their
sampling variance (equally when every variance is zero). This is the least-squares
projection onto the efficiency plane under the estimate's own variance; features
whose estimate is already exact are not moved. Reported stderr is the unadjusted
one (the projection can only reduce the error it measures).
"""

from __future__ import annotations

import numpy as np

from worker.shapley.game import Floats, Masks
from worker.shapley.sampling import iid_stats


class OwenSampler:
    """Owen sampling with complement pairs (see the module docstring)."""

    name = "owen"

    def group_cost(self, n: int) -> int:
        return 2 * (n + 1)

    def draw(self, rng: np.random.Generator, n: int, count: int) -> Masks:
        q = (rng.permutation(count) + rng.random(count)) / count
        base = rng.random((count, n)) < q[:, None]
        flips = base[:, None, :] ^ np.eye(n, dtype=np.bool_)[None, :, :]
        half = np.concatenate([base[:, None, :], flips], axis=1)
        return np.concatenate([half, ~half], axis=1)

    def finish(self, groups: Masks, values: Floats, anchor: Floats) -> tuple[Floats, Floats]:
        n = groups.shape[2]
        parts = [
            _marginals(groups[:, h * (n + 1)], values[:, h * (n + 1) : (h + 1) * (n + 1)])
            for h in (0, 1)
        ]
        mean, stderr = iid_stats((parts[0] + parts[1]) / 2)
        return efficiency_adjust(mean, stderr, anchor[0] - anchor[1]), stderr


def _marginals(base: Masks, values: Floats) -> Floats:
    """v(S + i) - v(S - i) for every feature, from S's value and its n flips."""
    sign = np.where(base, 1.0, -1.0)[:, :, None]
    out: Floats = sign * (values[:, :1] - values[:, 1:])
    return out


def efficiency_adjust(mean: Floats, stderr: Floats, total: Floats) -> Floats:
    """Spread the efficiency gap over features in proportion to their variance."""
    gap = total - mean.sum(axis=0)
    var = np.nan_to_num(stderr) ** 2  # unknown spread (one group): spread the gap equally
    weight_sum = var.sum(axis=0)
    n = mean.shape[0]
    weights = np.where(weight_sum > 0, var / np.where(weight_sum > 0, weight_sum, 1.0), 1.0 / n)
    out: Floats = mean + weights * gap
    return out
