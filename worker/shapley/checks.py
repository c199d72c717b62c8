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


def check_plans(
    n: int, ranking: Sequence[int], ks: Sequence[int] = CHECK_KS
) -> tuple[list[tuple[Kind, int]], npt.NDArray[np.bool_]]:
    """The checks' (kind, k) and their coalitions: the full context first, then one row per
    check, removals before keeps (none when no k lies strictly between 0 and ``n``)."""
    sizes = [k for k in ks if 0 < k < n]
    plans: list[tuple[Kind, int]] = [
        *(("remove", k) for k in sizes),
        *(("keep", k) for k in sizes),
    ]
    rows = [(removal_mask if kind == "remove" else keep_mask)(n, ranking, k) for kind, k in plans]
    return plans, np.stack([np.ones(n, dtype=bool), *rows])


def context_checks(
    cache: CoalitionCache,
    units: Sequence[Unit],
    ranking: Sequence[int],
    answer: str,
    ks: Sequence[int] = CHECK_KS,
) -> list[CheckOutcome]:
    """Removal then keep checks of ``ranking`` (document indices, best first; ``units`` are
    the whole documents in order) for the full-context ``answer``, in one batch each."""
    plans, masks = check_plans(len(units), ranking, ks)
    if not plans:
        return []
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
        for (kind, k), text, drop in zip(plans, texts, drops, strict=True)
    ]


@dataclass(frozen=True)
class Agreement:
    """An approximate session's answers against the exact ones on the same coalitions."""

    coalitions: int
    answers_agree: float
    logprob_mean_abs_diff: float | None


def agreement(
    approximate: CoalitionCache,
    exact: CoalitionCache,
    units: Sequence[Unit],
    masks: npt.NDArray[np.bool_],
    answer: str,
) -> Agreement:
    """How often ``approximate`` (a fast-mode job's cache) gives ``exact``'s answer on
    ``masks`` (QA-normalised), and how far apart their log p(``answer``) lie. The fast
    job's own answer is ``answer``; the exact engine may disagree with it even on the full
    context (the fast mode's bf16 copy), which the full row then counts."""
    fast = [normalize_answer(t) for t in approximate.answers(units, masks)]
    true = [normalize_answer(t) for t in exact.answers(units, masks)]
    agree = float(np.mean([a == b for a, b in zip(fast, true, strict=True)]))
    diff = None
    if normalize_answer(answer):
        text = answer.strip()
        gap = approximate.log_probs(units, masks, text) - exact.log_probs(units, masks, text)
        diff = float(np.mean(np.abs(gap)))
    return Agreement(len(masks), agree, diff)
