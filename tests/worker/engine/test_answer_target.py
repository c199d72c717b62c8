"""Which token ids ``log_probs`` scores for an answer text: the model's own, from the full
context, not whichever coalition first produced the same text, nor the text's encoding."""

from __future__ import annotations

import numpy as np

from tests.worker.engine.conftest import DOCS, QUESTION
from worker.engine.loading.registry import load_engine
from worker.evaluation import rankers
from worker.shapley import segment


def test_the_full_context_s_ids_are_the_answer_s_target() -> None:
    """Two id sequences with one text (a leading space token or not): the one the full
    context generated is scored, even when another coalition registered the text first."""
    session = load_engine("tiny-llama", device="cpu").open_session(QUESTION, DOCS)
    bare = tuple(session.codec.encode("Paris").ids)
    spaced = tuple(session.codec.encode(" Paris").ids)
    assert bare != spaced
    assert session._text(bare) == session._text(spaced) == "Paris"
    n = len(DOCS)
    partial = np.array([True] * (n - 1) + [False])
    session._remember("some coalition", bare, None, partial)
    assert session.target_ids("Paris") == bare
    session._remember("full context", spaced, None, np.ones(n, dtype=bool))
    assert session.target_ids("Paris") == spaced
    session._remember("another coalition", bare, None, partial)
    assert session.target_ids("Paris") == spaced


class Calls:
    """A session that records the order of calls (answers before log_probs)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    def answers(self, units: object, masks: np.ndarray) -> list[str]:
        self.calls.append(("answers", len(masks)))
        return ["Paris"] * len(masks)

    def log_probs(self, units: object, masks: np.ndarray, answer: str) -> np.ndarray:
        self.calls.append(("log_probs", len(masks)))
        return np.zeros(len(masks))


def test_leave_one_out_decodes_the_full_context_before_scoring() -> None:
    """Found on NQ: the harness's leave-one-out ran on a fresh session that had never
    decoded y, so it scored y's text encoding (SmolLM2: log p -14.2 where the model's own
    ids score -2.7) while every other method scored the model's ids."""
    session = Calls()
    units = segment.document_units(list(DOCS))
    rankers.leave_one_out_scores(session, units, "Paris")  # type: ignore[arg-type]
    assert session.calls == [("answers", 1), ("log_probs", len(units) + 1)]
