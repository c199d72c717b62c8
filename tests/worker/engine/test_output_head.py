"""The output head on every candidate state at once or a level of the walks at a time:
the same greedy answers and draft statistics, with fewer head calls at once."""

from __future__ import annotations

import pytest

from tests.worker.engine.conftest import DOCS, QUESTION, mixed_units, random_masks
from worker.engine.loading.registry import load_engine


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gemma"])
def test_all_at_once_and_level_by_level_agree(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = load_engine(name, device="cpu")
    units = mixed_units()
    masks = random_masks(len(units), 48, seed=5)
    calls, results = [], []
    greedy = engine.greedy_tokens  # type: ignore[attr-defined]
    for rows in (0, 10**6):  # never / always worth projecting every state at once
        monkeypatch.setattr(type(engine), "head_read_rows", property(lambda _, rows=rows: rows))
        counted = [0]

        def counting(hidden, counted=counted):
            counted[0] += 1
            return greedy(hidden)

        monkeypatch.setattr(engine, "greedy_tokens", counting)
        session = engine.open_session(QUESTION, DOCS, max_new_tokens=6)
        results.append(session.answer_tokens(units, masks))  # type: ignore[attr-defined]
        calls.append(counted[0])
        stats = session.stats
        results.append((stats.draft_tokens_proposed, stats.draft_tokens_accepted))
    assert results[0] == results[2]
    assert results[1] == results[3]
    assert calls[1] < calls[0]
