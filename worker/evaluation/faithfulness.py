"""ContextCite's intrinsic faithfulness checks (Cohen-Wang et al., 2024) as pure functions.

A method's document scores are judged on the model's own full-context answer ``y``:

- *top-k removal*: drop the k highest-scored documents; a faithful ranking makes
  ``log p(y)`` fall and the greedy answer change;
- *top-k keep*: keep only those k documents; a faithful ranking keeps the answer ``y``;
- *LDS*: over held-out random coalitions, the Spearman correlation between the method's
  additive prediction (sum of kept scores) and the coalition's true value.

Ties among scores are broken by one seeded random order per question, the same for every
method, so a method that cannot tell documents apart never wins by the retriever's order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping, Sequence

import numpy as np
import numpy.typing as npt

from worker.shapley.checks import keep_mask as keep_mask  # the service's own checks
from worker.shapley.checks import removal_mask as removal_mask

Masks = npt.NDArray[np.bool_]


def question_seed(question_id: str, base: int = 0) -> int:
    """A 31-bit seed from the question's id (and the run's base seed): fixed for a question,
    independent between questions, so no two questions share coalitions by construction."""
    digest = hashlib.sha256(f"{base}:{question_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def tie_order(n: int, seed: int) -> list[int]:
    """A random priority per document (lower first), the tie-break every method shares."""
    priority = np.random.default_rng([seed, 7]).permutation(n)
    return [int(p) for p in priority]


def top_documents(scores: Sequence[float], priority: Sequence[int]) -> list[int]:
    """Document indices by decreasing score; equal scores by the shared random priority."""
    return sorted(range(len(scores)), key=lambda i: (-float(scores[i]), priority[i]))


def removal_drop(
    scores: Sequence[float], priority: Sequence[int], values: Mapping[str, float], k: int
) -> float:
    """The fall of the value (log p(y)) when the ``k`` top-scored documents leave the full
    context, read from a table of coalition values by key."""
    n = len(scores)
    removed = removal_mask(n, top_documents(scores, priority), k)
    return values["1" * n] - values[mask_key(removed)]


def mask_key(mask: Masks) -> str:
    """A readable, JSON-friendly key: '1' for a kept document, '0' for a removed one."""
    return "".join("1" if bool(k) else "0" for k in mask)


def from_key(key: str) -> Masks:
    """The mask of :func:`mask_key`."""
    return np.array([c == "1" for c in key], dtype=bool)


def heldout_masks(n: int, count: int, seed: int, exclude: Collection[str] = ()) -> Masks:
    """``count`` random coalitions (each document kept with probability 1/2), distinct, and
    none of the ``exclude`` keys (coalitions an estimator used), nor the full or empty one.

    When fewer such coalitions exist than asked (tiny n), all that exist are returned.
    """
    rng = np.random.default_rng([seed, 11])
    banned = set(exclude) | {"1" * n, "0" * n}
    free = 2**n - len({k for k in banned if len(k) == n})
    rows: list[Masks] = []
    seen: set[str] = set()
    while len(rows) < min(count, free):
        row = rng.random(n) < 0.5
        key = mask_key(row)
        if key not in banned and key not in seen:
            seen.add(key)
            rows.append(row)
    return np.array(rows, dtype=bool).reshape(len(rows), n)


def _ranks(values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Average ranks (ties share the mean of their positions), as Spearman needs."""
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values))
    sorted_values = values[order]
    start = 0
    while start < len(values):
        end = start
        while end + 1 < len(values) and sorted_values[end + 1] == sorted_values[start]:
            end += 1
        ranks[order[start : end + 1]] = (start + end) / 2.0
        start = end + 1
    return ranks


def spearman(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Spearman's rho with average ranks; None when either side is constant (undefined)."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(x) != len(y) or len(x) < 2:
        return None
    rx, ry = _ranks(x), _ranks(y)
    if np.ptp(rx) == 0 or np.ptp(ry) == 0:
        return None
    return float(np.corrcoef(rx, ry)[0, 1])


def additive_predictions(scores: Sequence[float], masks: Masks) -> npt.NDArray[np.float64]:
    """Sum of the kept documents' scores, per coalition (the linear surrogate's output)."""
    product = np.asarray(masks, dtype=float) @ np.asarray(scores, dtype=float)
    return np.asarray(product, dtype=np.float64)


def lds(scores: Sequence[float], masks: Masks, truth: Sequence[float]) -> float | None:
    """The linear datamodeling score: Spearman(additive prediction, true value)."""
    if len(masks) == 0:
        return None
    return spearman(additive_predictions(scores, masks).tolist(), list(truth))
