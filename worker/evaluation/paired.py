"""Intervals and paired tests for the evaluation tables: every mean with a bootstrap 95%
interval, every comparison of two methods paired on the same questions.

Pure NumPy; the resampling seed is fixed so a table recomputed from the same records is
identical.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

RESAMPLES = 2000


@dataclass(frozen=True)
class Interval:
    """A mean over ``n`` questions with its percentile bootstrap 95% interval."""

    mean: float | None
    low: float | None
    high: float | None
    n: int

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def bootstrap_mean(values: Sequence[float], seed: int = 0) -> Interval:
    """Mean and percentile 95% interval over ``RESAMPLES`` resamples (none for n < 2)."""
    x = np.asarray([float(v) for v in values], dtype=float)
    if len(x) == 0:
        return Interval(None, None, None, 0)
    if len(x) == 1:
        return Interval(float(x[0]), None, None, 1)
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(RESAMPLES, len(x)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return Interval(float(x.mean()), float(low), float(high), len(x))


def paired_values(
    a: Sequence[float | None], b: Sequence[float | None]
) -> tuple[list[float], list[float]]:
    """The questions where both methods have a value, as two aligned lists."""
    kept = [(x, y) for x, y in zip(a, b, strict=True) if x is not None and y is not None]
    return [float(x) for x, _ in kept], [float(y) for _, y in kept]


def paired_difference(
    a: Sequence[float | None], b: Sequence[float | None], seed: int = 0
) -> Interval:
    """Mean of ``a - b`` over the questions both have, with its bootstrap interval."""
    x, y = paired_values(a, b)
    return bootstrap_mean([p - q for p, q in zip(x, y, strict=True)], seed)


@dataclass(frozen=True)
class SignTest:
    """Questions where ``a`` beat ``b``, lost to it, tied; exact two-sided binomial p."""

    wins: int
    losses: int
    ties: int
    p_value: float | None

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def sign_test(a: Sequence[float | None], b: Sequence[float | None]) -> SignTest:
    """Exact sign test on the paired differences (ties dropped, as the test requires)."""
    x, y = paired_values(a, b)
    wins = sum(1 for p, q in zip(x, y, strict=True) if p > q)
    losses = sum(1 for p, q in zip(x, y, strict=True) if p < q)
    ties = len(x) - wins - losses
    n = wins + losses
    if n == 0:
        return SignTest(wins, losses, ties, None)
    tail = sum(math.comb(n, i) for i in range(min(wins, losses) + 1)) / 2.0**n
    return SignTest(wins, losses, ties, min(1.0, 2.0 * tail))


def expected_recall_at_k(
    scores: Sequence[float], relevant: Sequence[int] | frozenset[int], k: int
) -> float | None:
    """Recall@k expected over uniformly random tie-breaking.

    A relevant passage with ``a`` passages scored strictly higher and ``m`` scored equal
    (itself included) is in the top k with probability 1 if ``a + m <= k``, 0 if
    ``a >= k``, else ``(k - a) / m``; recall is the mean over the relevant passages.
    None when no passage is known to be relevant.
    """
    if not relevant:
        return None
    s = np.asarray(scores, dtype=float)
    shares = []
    for r in relevant:
        above = int(np.sum(s > s[r]))
        equal = int(np.sum(s == s[r]))
        shares.append(min(1.0, max(0.0, (k - above) / equal)))
    return float(np.mean(shares))
