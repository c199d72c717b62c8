"""Every explanation's receipt: what the model does when the passages it ranks first leave
the context, and when they are all that is left.

These are ContextCite's top-k removal and keep checks (Cohen-Wang et al., 2024), run on the
job's own ranking and the model's own answer y: a faithful ranking names passages whose
removal changes the answer (or at least lowers log p(y)) and which alone keep it. Scores
alone cannot show that (a ranking of noise has scores too), and the check costs at most
2k coalitions, most of which the document level has already evaluated (at 10 documents and
the default budget ``layered`` enumerates sizes 1, 2, 8 and 9, so the k = 1, 2 checks are
free).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from worker.shapley.coalitions import CoalitionCache
from worker.shapley.game import normalize_answer
from worker.shapley.units import Unit

CHECK_KS = (1, 2, 3)
"""How many top passages each check removes or keeps (those below the number of documents)."""

Kind = Literal["remove", "keep"]


@dataclass(frozen=True)
class CheckOutcome:
    """The model's answer on the full context with ``documents`` removed, or alone."""

    kind: Kind
    documents: list[int]
    answer: str
    answer_changed: bool
    logprob_drop: float | None
    """log p(y | full context) - log p(y | this context); None when y is empty."""


def removal_mask(n: int, top: Sequence[int], k: int) -> npt.NDArray[np.bool_]:
    """Every document kept except the first ``k`` of ``top``."""
    mask = np.ones(n, dtype=bool)
    mask[list(top[:k])] = False
    return mask


def keep_mask(n: int, top: Sequence[int], k: int) -> npt.NDArray[np.bool_]:
    """Only the first ``k`` of ``top`` kept."""
    mask = np.zeros(n, dtype=bool)
    mask[list(top[:k])] = True
    return mask


def context_checks(
    cache: CoalitionCache,
    units: Sequence[Unit],
    ranking: Sequence[int],
    answer: str,
    ks: Sequence[int] = CHECK_KS,
) -> list[CheckOutcome]:
    """Removal then keep checks of ``ranking`` (document indices, best first; ``units`` are
    the whole documents in order) for the full-context ``answer``, in one batch each."""
    n = len(units)
    sizes = [k for k in ks if 0 < k < n]
    if not sizes:
        return []
    plans: list[tuple[Kind, int, npt.NDArray[np.bool_]]] = [
        *(("remove", k, removal_mask(n, ranking, k)) for k in sizes),
        *(("keep", k, keep_mask(n, ranking, k)) for k in sizes),
    ]
    masks = np.stack([np.ones(n, dtype=bool), *(mask for _, _, mask in plans)])
    texts = cache.answers(units, masks)[1:]
    target = normalize_answer(answer)
    drops: list[float | None] = [None] * len(plans)
    if target:
        logps = cache.log_probs(units, masks, answer.strip())
        drops = [float(logps[0] - v) for v in logps[1:]]
    return [
        CheckOutcome(
            kind,
            [int(d) for d in ranking[:k]],
            text.strip(),
            normalize_answer(text) != target,
            drop,
        )
        for (kind, k, _), text, drop in zip(plans, texts, drops, strict=True)
    ]
