"""Fast mode with part of the kept context recomputed (``EngineOptions.fast_recompute``)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from tests.worker.engine.conftest import DOCS, QUESTION, random_masks
from tests.worker.engine.reference import NEAR_TIE, causal_generate, closed_up_prompt
from worker.engine.base import EngineOptions
from worker.engine.causal.planning import hybrid_split
from worker.engine.loading.registry import load_engine
from worker.shapley import segment

MAX_NEW = 6


def flags(text: str) -> np.ndarray:
    return np.array([c == "1" for c in text])


def test_nothing_after_a_removed_slot_leaves_nothing_to_recompute():
    keep, redo = hybrid_split(flags("11110000"), 1.0)
    assert (keep.tolist(), redo.tolist()) == ([0, 1, 2, 3], [])
    keep, redo = hybrid_split(flags("1111"), 1.0)  # nothing removed: plain fast mode
    assert (keep.tolist(), redo.tolist()) == ([0, 1, 2, 3], [])


def test_plain_fast_mode_reuses_every_kept_slot():
    keep, redo = hybrid_split(flags("1101101"), 0.0)
    assert (keep.tolist(), redo.tolist()) == ([0, 1, 3, 4, 6], [])


def test_everything_after_the_first_removed_slot_can_be_recomputed():
    keep, redo = hybrid_split(flags("1101101"), 1.0)
    assert (keep.tolist(), redo.tolist()) == ([0, 1], [3, 4, 6])


def test_a_share_recomputes_the_last_kept_slots():
    # 4 kept slots after the first removed one (3, 4, 6, 7): half of them is the last two
    keep, redo = hybrid_split(flags("11011011"), 0.5)
    assert (keep.tolist(), redo.tolist()) == ([0, 1, 3, 4], [6, 7])
    # a share rounds up: any positive share recomputes at least one slot
    assert hybrid_split(flags("11011011"), 0.01)[1].tolist() == [7]


@pytest.mark.parametrize("share", [-0.1, 1.5])
def test_a_share_outside_zero_to_one_is_refused_by_name(share):
    with pytest.raises(ValueError, match="fast_recompute"):
        EngineOptions(fast=True, fast_recompute=share)


def test_fast_plans_close_every_gap():
    """Kept slots take the positions they have in the coalition's own prompt, the tail
    follows them (``CoalitionPlan.placed``)."""
    engine = load_engine("tiny-llama", device="cpu", options=EngineOptions(fast=True))
    units = segment.document_units(DOCS)
    session = engine.open_session(QUESTION, DOCS, max_new_tokens=1)
    (plan,) = session.planner.plans(units, np.array([[1, 0, 1, 0, 1]], dtype=bool))
    assert plan.placed is not None
    assert plan.placed.tolist() == list(range(len(plan.keep)))
    assert plan.start == len(plan.keep)
    assert plan.keep[-1] > len(plan.keep)  # the slots came from further along


@pytest.fixture(scope="module")
def recomputing_llama():
    options = EngineOptions(fast=True, fast_bf16="off", fast_recompute=1.0)
    return load_engine("tiny-llama", device="cpu", options=options)


def test_recomputing_everything_equals_generate_on_the_closed_up_prompt(recomputing_llama):
    """Share 1: the full context's ids with the removed documents' slots dropped (their
    numbering kept) decode as plain ``generate`` does."""
    engine = recomputing_llama
    units = segment.document_units(DOCS)
    masks = random_masks(len(units), 24, seed=5)
    session = engine.open_session(QUESTION, DOCS, max_new_tokens=MAX_NEW)
    got = session.answer_tokens(units, masks)
    equal = 0
    for row, mine in zip(masks, got, strict=True):
        prompt = closed_up_prompt(session, units, row)
        ref, gap = causal_generate(
            engine.model, engine.tokenizer, prompt, MAX_NEW, engine.eos, engine.pad
        )
        if list(mine) != ref:
            assert gap < NEAR_TIE, f"{list(mine)} != generate {ref} (top-2 gap {gap})"
        else:
            equal += 1
    assert equal >= 23
    assert len({tuple(a) for a in got}) >= 3  # the documents matter to the answer


def test_a_share_computes_fewer_tokens_than_recomputing_everything(recomputing_llama):
    units = segment.document_units(DOCS)
    masks = random_masks(len(units), 16, seed=6)
    computed = {}
    for share in (0.0, 0.5, 1.0):
        engine = recomputing_llama.tuned(replace(recomputing_llama.options, fast_recompute=share))
        session = engine.open_session(QUESTION, DOCS, max_new_tokens=1)
        session.answers(units, masks)
        computed[share] = session.stats.tokens_computed
    assert computed[0.0] < computed[0.5] < computed[1.0]


def test_plain_fast_mode_equals_generate_when_only_trailing_documents_are_removed():
    """Every kept slot precedes the removed ones, so the cache holds exactly what the
    coalition's own prompt computes; the tail closed up makes the whole prompt exact."""
    engine = load_engine(
        "tiny-llama", device="cpu", options=EngineOptions(fast=True, fast_bf16="off")
    )
    units = segment.document_units(DOCS)
    masks = np.array([[1, 1, 0, 0, 0], [1, 0, 0, 0, 0], [1, 1, 1, 1, 0]], dtype=bool)
    session = engine.open_session(QUESTION, DOCS, max_new_tokens=MAX_NEW)
    got = session.answer_tokens(units, masks)
    tail = session.full[len(session.full) - len(session.layout.tail) :]
    for row, mine in zip(masks, got, strict=True):
        kept = session.layout.kept_slots(units, row)
        prompt = list(session.full[: int(np.flatnonzero(~kept)[0])]) + list(tail)
        ref, _ = causal_generate(
            engine.model, engine.tokenizer, prompt, MAX_NEW, engine.eos, engine.pad
        )
        assert list(mine) == ref


def test_a_batch_counts_the_slots_each_fast_coalition_brings():
    """Each fast-mode coalition gets its own row of moved slots: a batch's memory budget
    counts them, so a budget of three full contexts holds at most three coalitions."""
    engine = load_engine("tiny-llama", device="cpu", options=EngineOptions(fast=True))
    session = engine.open_session(QUESTION, DOCS, max_new_tokens=1)
    units = segment.document_units(DOCS)
    plans = session.planner.plans(units, random_masks(len(units), 12, seed=8))
    limited = engine.tuned(replace(engine.options, batch_tokens=3 * len(session.full)))
    session.engine = limited
    batches = session._batches(plans, extra=0)
    assert sum(len(b) for b in batches) == 12
    assert max(len(b) for b in batches) <= 3
    assert all(
        sum(p.reach + len(p.new) for _, p in b) <= 3 * len(session.full)
        for b in batches
        if len(b) > 1
    )
