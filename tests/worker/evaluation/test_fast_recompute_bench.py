"""bench/fast_recompute.py's ``--numbers kept``: the game whose kept documents keep their
full-context numbers is exactly what fast mode's reused cache holds."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from bench.fast_recompute import numbering  # noqa: E402
from tests.worker.engine.conftest import DOCS, QUESTION, random_masks  # noqa: E402
from tests.worker.engine.reference import closed_up_prompt  # noqa: E402
from worker.engine.base import EngineOptions  # noqa: E402
from worker.engine.loading.registry import load_engine  # noqa: E402
from worker.shapley import segment  # noqa: E402


@pytest.fixture(scope="module")
def session():
    engine = load_engine("tiny-llama", device="cpu", options=EngineOptions())
    return engine.open_session(QUESTION, DOCS, max_new_tokens=1)


def test_kept_numbers_are_the_closed_up_full_context_and_renumbering_returns_after(
    session,
) -> None:
    units = segment.document_units(DOCS)
    masks = random_masks(len(units), 12, seed=3)
    masks = masks[~masks[:, 0] & masks.any(axis=1)]  # the first removed, others kept
    assert len(masks)
    with numbering(True):
        for row in masks:
            assert list(session.layout.ids(units, row)) == closed_up_prompt(session, units, row)
    for row in masks:  # the product's game again: the kept documents are renumbered
        assert list(session.layout.ids(units, row)) != closed_up_prompt(session, units, row)


def test_kept_numbers_leave_the_full_context_alone(session) -> None:
    units = segment.document_units(DOCS)
    full = np.ones((len(units),), dtype=bool)
    with numbering(True):
        assert tuple(session.layout.ids(units, full)) == tuple(session.full)
