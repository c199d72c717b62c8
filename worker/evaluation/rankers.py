"""Passage scorers compared by the harness, each giving one score per document (higher =
more responsible for the answer). Orders come from :func:`metrics.rank_by_scores`.

- given order: the retriever's order (scores n-1 .. 0);
- leave-one-out: drop in log p(answer) when one document is removed (categorical change of
  the answer when the full answer is empty);
- Shapley / Banzhaf: document-level scores of this project's explanation for its chosen
  answer (read from an ``ExplainResult``);
- attention mass lives in :mod:`worker.evaluation.attention` (it needs the model itself).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from service.contract.results import ExplainResult
from worker.evaluation.metrics import normalize_answer
from worker.shapley.oracle import Oracle
from worker.shapley.units import Unit


def given_order_scores(n: int) -> list[float]:
    """Scores that reproduce the retriever's order."""
    return [float(n - i) for i in range(n)]


def leave_one_out_masks(n: int) -> np.ndarray:
    """Row 0 keeps everything; row i+1 drops unit i."""
    masks = np.ones((n + 1, n), dtype=bool)
    masks[np.arange(1, n + 1), np.arange(n)] = False
    return masks


def leave_one_out_scores(session: Oracle, units: Sequence[Unit], answer: str) -> list[float]:
    """How much the answer depends on each unit alone: log p(answer | all) minus
    log p(answer | all but i); for an empty answer, 1.0 when removing i changes it."""
    masks = leave_one_out_masks(len(units))
    if normalize_answer(answer):
        session.answers(units, masks[:1])  # y's own ids, not its text's encoding
        logp = np.asarray(session.log_probs(units, masks, answer), dtype=float)
        return [float(logp[0] - logp[i + 1]) for i in range(len(units))]
    got = [normalize_answer(a) for a in session.answers(units, masks)]
    return [float(got[i + 1] != got[0]) for i in range(len(units))]


def document_scores(result: ExplainResult, n_documents: int, candidate: int = 0) -> list[float]:
    """Document-level scores for one candidate, by document index (0.0 where absent).

    Candidate 0 is the answer the explanation chose (its top-ranked candidate), the one
    its own ``passage_ranking`` is built on; ``result.answer`` is the full-context answer.
    """
    scores = [0.0] * n_documents
    level = next((lv for lv in result.levels if lv.level == "document"), None)
    if level is None or not result.candidates:
        return scores
    for feature in level.features:
        scores[feature.document] += feature.score[candidate]
    return scores
