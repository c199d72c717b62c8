"""Games with known Shapley values, as plain functions over coalition masks.

Each ``*_answers`` / ``*_values`` function maps a bool matrix (m, n) to answers or
values, so a test can wrap it in a CategoricalGame or RealGame and count calls.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

from worker.shapley.game import CategoricalGame, Masks, RealGame

Floats = npt.NDArray[np.float64]


class Counted:
    """Wraps an evaluate function and records every coalition it was asked for."""

    def __init__(self, fn: Callable[[Masks], Sequence[str] | Floats]) -> None:
        self.fn = fn
        self.calls = 0
        self.seen: list[bytes] = []

    def __call__(self, masks: Masks) -> Sequence[str] | Floats:
        self.calls += 1
        self.seen.extend(np.packbits(row).tobytes() for row in masks)
        return self.fn(masks)


def additive(weights: Floats) -> Callable[[Masks], Floats]:
    """v(S) = sum of the kept weights: Shapley value = weight, Banzhaf value = weight."""
    return lambda masks: masks.astype(np.float64) @ weights


def glove(left: int, right: int) -> Callable[[Masks], Floats]:
    """v(S) = number of matched pairs: min(left gloves kept, right gloves kept)."""

    def value(masks: Masks) -> Floats:
        out: Floats = np.minimum(masks[:, :left].sum(1), masks[:, left : left + right].sum(1))
        return out.astype(np.float64)

    return value


def unanimity(n: int, carrier: Sequence[int]) -> Callable[[Masks], list[str]]:
    """'Paris' iff every feature of the carrier is kept, else 'unknown'."""
    idx = list(carrier)
    return lambda masks: ["Paris" if row[idx].all() else "unknown" for row in masks]


def majority(weights: Floats, quota: float) -> Callable[[Masks], list[str]]:
    """Weighted voting: 'Yes.' when kept weight exceeds the quota, else 'no'."""
    return lambda masks: ["Yes." if w > quota else "no" for w in masks @ weights]


def random_categorical(n: int, k: int, seed: int) -> Callable[[Masks], list[str]]:
    """Answer = argmax over k labels of a random linear score plus interactions."""
    rng = np.random.default_rng(seed)
    weights = rng.normal(size=(n, k))
    pairs = rng.normal(size=(n, n, k)) * 0.5
    bias = rng.normal(size=k)
    labels = [f"Answer {j}" for j in range(k)]

    def answers(masks: Masks) -> list[str]:
        x = masks.astype(np.float64)
        score = x @ weights + np.einsum("mi,ijk,mj->mk", x, pairs, x) + bias
        return [labels[j] for j in score.argmax(axis=1)]

    return answers


def real_game(fn: Callable[[Masks], Floats], n: int, batch_size: int = 64) -> RealGame:
    return RealGame(n, fn, batch_size=batch_size)


def categorical_game(
    fn: Callable[[Masks], Sequence[str]], n: int, batch_size: int = 64
) -> CategoricalGame:
    return CategoricalGame(n, fn, batch_size=batch_size)
