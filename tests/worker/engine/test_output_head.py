"""The output head on every candidate state at once or a level of the walks at a time:
the same greedy answers and draft statistics, with fewer head calls at once."""

from __future__ import annotations

import numpy as np
import pytest

from worker.engine.registry import load_engine
from worker.shapley import segment
from worker.shapley.units import Document

QUESTION = "Who wrote the report?"
DOCS = [
    Document("The report was written by Ada. It was long and had many parts.", "Report"),
    Document("Bob reviewed it twice. He liked it a lot.", "Review"),
    Document("Paris is in France. The weather was fine that day.", "Paris"),
    Document("The author is Ada Lovelace. She was a mathematician.", "Author"),
]


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gemma"])
def test_all_at_once_and_level_by_level_agree(name: str) -> None:
    engine = load_engine(name, device="cpu")
    units = [u for i in range(len(DOCS)) for u in segment.sentence_units(DOCS, i)]
    masks = np.random.default_rng(5).random((48, len(units))) < 0.6
    calls, results = [], []
    logits = engine.logits  # type: ignore[attr-defined]
    saved = engine.head_read_rows  # type: ignore[attr-defined]
    try:
        for rows in (0, 10**6):  # never / always worth projecting every state at once
            engine.head_read_rows = rows  # type: ignore[attr-defined]
            counted = [0]

            def counting(hidden, counted=counted):
                counted[0] += 1
                return logits(hidden)

            engine.logits = counting  # type: ignore[attr-defined]
            session = engine.open_session(QUESTION, DOCS, max_new_tokens=6)
            results.append(session.answer_tokens(units, masks))  # type: ignore[attr-defined]
            calls.append(counted[0])
            stats = session.stats
            results.append((stats.draft_tokens_proposed, stats.draft_tokens_accepted))
    finally:
        engine.head_read_rows = saved  # type: ignore[attr-defined]
        engine.logits = logits  # type: ignore[attr-defined]
    assert results[0] == results[2]
    assert results[1] == results[3]
    assert calls[1] < calls[0]
