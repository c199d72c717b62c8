"""Candidate answers and passage ranking, from the document-level scores.

Candidates are the distinct normalised answers decoded over the job's distinct model
inputs. An answer is kept when it was produced by at least ``floor`` (default 1%) of
them, and the full-context answer is always kept. Candidates are ranked by their
*explanation mass*: the sum of their positive document-level scores, i.e. how much
support for that answer the documents carry; ties by frequency, then the full-context
answer first, then text. An answer produced by fewer than ``MIN_SUPPORT`` coalitions
never outranks the full-context answer: one coalition's answer scores +-0.5 on that
coalition's members alone, which could hand it the largest mass without any support.

Passages are ranked for the model's own (full-context) answer, never for another
candidate: by default by their score in the log-probability game of that answer, ties
broken by the answer game, and documents still tied on both are reported as tied.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from worker.shapley.game import LOGPROB_KEY, Floats
from worker.shapley.sampling import Estimate

FREQUENCY_FLOOR = 0.01
MIN_SUPPORT = 2
"""Coalitions an answer must be produced by to outrank the full-context answer."""


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
    return _behind_the_answer(ranked, counts, full_answer)


def _behind_the_answer(
    ranked: list[RankedAnswer], counts: Mapping[str, int], full_answer: str
) -> list[RankedAnswer]:
    """Moves candidates with less than ``MIN_SUPPORT`` coalitions from before the
    full-context answer to just after it (their order otherwise kept)."""
    at = next(i for i, c in enumerate(ranked) if c.key == full_answer)
    ahead = ranked[:at]
    weak = [c for c in ahead if counts.get(c.key, 0) < MIN_SUPPORT]
    strong = [c for c in ahead if counts.get(c.key, 0) >= MIN_SUPPORT]
    return [*strong, ranked[at], *weak, *ranked[at + 1 :]]


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


def passage_ranking(
    documents: Estimate, doc_ids: Sequence[int], key: str, rank_by: str = "logprob"
) -> tuple[list[int], list[list[int]]]:
    """Document indices best first for answer ``key`` (the full-context answer), and the
    groups of documents tied on both games.

    ``rank_by="logprob"``: by the log-probability column where the estimate has one, ties
    broken by the answer game's column for ``key``; ``"answer"``: the other way round.
    Scores equal to 12 decimals count as tied (estimators' float noise is not a signal);
    tied documents stay in document order.
    """
    answer = np.round(align(documents, [key])[0][:, 0], 12)
    # align zero-fills a column the estimate lacks: no log-probability column, all zeros
    logprob = np.round(align(documents, [LOGPROB_KEY])[0][:, 0], 12)
    by_logprob = rank_by == "logprob" and LOGPROB_KEY in documents.answers
    first, second = (logprob, answer) if by_logprob else (answer, logprob)
    order = sorted(range(len(doc_ids)), key=lambda i: (-first[i], -second[i], doc_ids[i]))
    ties: list[list[int]] = []
    for i, j in zip(order, order[1:], strict=False):
        if (first[i], second[i]) != (first[j], second[j]):
            continue
        if ties and ties[-1][-1] == doc_ids[i]:
            ties[-1].append(doc_ids[j])
        else:
            ties.append([doc_ids[i], doc_ids[j]])
    return [doc_ids[i] for i in order], ties
