"""Opt-in fast mode (decoder-only): the full-context cache with removed slots masked out."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from tests.worker.engine.conftest import DOCS, QUESTION, mixed_units, random_masks
from worker.engine.base import EngineOptions
from worker.engine.errors import FastModeUnsupported
from worker.engine.loading.registry import load_engine
from worker.shapley import segment
from worker.shapley.units import Document


@pytest.fixture(scope="module")
def fast_llama():
    # fp32 here; the bf16 twin has test_bf16_twin.py
    return load_engine(
        "tiny-llama", device="cpu", options=EngineOptions(fast=True, fast_bf16="off")
    )


def test_full_coalition_equals_exact_mode(engines, fast_llama):
    units = mixed_units()
    full = np.ones((1, len(units)), dtype=bool)
    exact = engines["tiny-llama"].open_session(QUESTION, DOCS, max_new_tokens=8)
    fast = fast_llama.open_session(QUESTION, DOCS, max_new_tokens=8)
    assert fast.answer_tokens(units, full) == exact.answer_tokens(units, full)


def test_a_coalition_computes_only_the_tail(fast_llama):
    session = fast_llama.open_session(QUESTION, DOCS, max_new_tokens=1)
    units = mixed_units()
    masks = random_masks(len(units), 10, seed=9)
    session.answers(units, masks)
    tail = len(session.layout.tail)
    distinct = len({m.tobytes() for m in masks})
    # the shared full-context pass, then the tail (plus a 1-token draft after batch 1, and
    # a little padding where the batch spreads over two cache rows)
    assert session.stats.tokens_computed - len(session.full) <= distinct * (tail + 2)
    assert session.stats.forward_passes == 1 + distinct


def test_removed_documents_are_invisible_to_the_tail(fast_llama):
    """With every document hidden, rewriting their text (same length, so same positions)
    cannot change the answer: the tail sees only the head."""
    other = [Document("z" * len(d.text), d.title) for d in DOCS]
    answers = []
    for docs in (DOCS, other):
        units = segment.document_units(docs)
        empty = np.zeros((1, len(units)), dtype=bool)
        session = fast_llama.open_session(QUESTION, docs, max_new_tokens=6)
        answers.append(session.answer_tokens(units, empty))
    assert answers[0] == answers[1]


def test_a_job_can_ask_for_fast_mode_without_changing_the_engine(engines, fast_llama, monkeypatch):
    shared = engines["tiny-llama"]
    exact_engine = shared.tuned(replace(shared.options, fast_bf16="off"))  # as fast_llama's
    units = mixed_units()
    masks = random_masks(len(units), 12, seed=4)
    asked = exact_engine.open_session(QUESTION, DOCS, max_new_tokens=6, fast=True)
    assert exact_engine.options.fast is False
    assert asked.engine.options.fast is True
    assert asked.stats.fast is True
    configured = fast_llama.open_session(QUESTION, DOCS, max_new_tokens=6)
    assert asked.answer_tokens(units, masks) == configured.answer_tokens(units, masks)
    # and the other way round: an exact job on an engine configured for fast mode
    exact = fast_llama.open_session(QUESTION, DOCS, max_new_tokens=6, fast=False)
    reference = exact_engine.open_session(QUESTION, DOCS, max_new_tokens=6)
    assert exact.stats.fast is False
    assert exact.answer_tokens(units, masks) == reference.answer_tokens(units, masks)


def test_fast_mode_is_decoder_only(engines):
    with pytest.raises(FastModeUnsupported, match="decoder-only"):
        engines["tiny-t5-fid"].open_session(QUESTION, DOCS, fast=True)
    assert engines["tiny-t5"].open_session(QUESTION, DOCS, fast=False).stats.fast is False
