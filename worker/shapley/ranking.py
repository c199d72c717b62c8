"""Candidate answers and passage ranking, from the document-level scores.

Candidates are the distinct normalised answers decoded over the job's distinct model
inputs. An answer is kept when it was produced by at least ``floor`` (default 1%) of
them, and the full-context answer is always kept. Candidates are ranked by their
*explanation mass*: the sum of their positive document-level scores, i.e. how much
support for that answer the documents carry; ties by frequency, then the full-context
answer first, then text. Passages are ranked by their document-level score for the
top candidate; ties keep the original order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from worker.shapley.game import Floats
from worker.shapley.sampling import Estimate

FREQUENCY_FLOOR = 0.01


@dataclass(frozen=True)
class RankedAnswer:
    """A candidate: ``key`` is the normalised answer, ``text`` its first surface form."""

    key: str
    text: str
    frequency: float
    score: float


def rank_candidates(
    counts: Mapping[str, int],
    surface: Mapping[str, str],
    full_answer: str,
    documents: Estimate,
    floor: float = FREQUENCY_FLOOR,
) -> list[RankedAnswer]:
    """Candidates over the frequency floor (plus the full-context answer), best first."""
    total = max(sum(counts.values()), 1)
    keys = [k for k, c in counts.items() if c / total >= floor or k == full_answer]
    if full_answer not in keys:
        keys.append(full_answer)
    mass = explanation_mass(documents, keys)
    ranked = [
        RankedAnswer(k, surface.get(k, k), counts.get(k, 0) / total, mass[i])
        for i, k in enumerate(keys)
    ]
    ranked.sort(key=lambda c: (-c.score, -c.frequency, c.key != full_answer, c.key))
    return ranked


def explanation_mass(documents: Estimate, keys: Sequence[str]) -> list[float]:
    """Per answer, the sum of positive document-level scores (0 if never scored)."""
    mean, _ = align(documents, keys)
    mass: list[float] = np.clip(mean, 0.0, None).sum(axis=0).tolist()
    return mass


def align(est: Estimate, keys: Sequence[str]) -> tuple[Floats, Floats]:
    """(mean, stderr) with columns in ``keys`` order; answers the game never saw score 0."""
    n = est.mean.shape[0]
    mean = np.zeros((n, len(keys)))
    stderr = np.zeros((n, len(keys)))
    column = {a: j for j, a in enumerate(est.answers)}
    for i, key in enumerate(keys):
        if key in column:
            mean[:, i] = est.mean[:, column[key]]
            stderr[:, i] = est.stderr[:, column[key]]
    return mean, stderr


def passage_ranking(documents: Estimate, doc_ids: Sequence[int], key: str) -> list[int]:
    """Document indices by their score for answer ``key``, highest first (stable)."""
    mean, _ = align(documents, [key])
    order = sorted(range(len(doc_ids)), key=lambda i: (-mean[i, 0], doc_ids[i]))
    return [doc_ids[i] for i in order]
