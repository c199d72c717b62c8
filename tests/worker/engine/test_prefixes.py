"""The job's prefix store: a token trie over stored keys and values, and what reusing it
saves a session across batches and calls."""

from __future__ import annotations

import numpy as np
import torch

from tests.worker.engine.conftest import DOCS, QUESTION
from tests.worker.engine.test_prefix_tree import tuned
from worker.engine.batching.prefixes import PrefixStore
from worker.shapley import segment


def chain(values: list[float]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """One layer's keys (and values = keys + 100) for a chain, one head, one dim."""
    keys = torch.tensor(values, dtype=torch.float32).view(1, -1, 1)
    return [(keys, keys + 100)]


def test_match_add_and_gather():
    store = PrefixStore(budget_slots=100)
    assert store.add(-1, [1, 2, 3], chain([10, 20, 30]), start=0) == 3
    # a second chain sharing the first two tokens stores only what differs
    assert store.add(1, [4, 5], chain([40, 50]), start=2) == 2
    assert store.match([1, 2, 3, 9], limit=4).tolist() == [0, 1, 2]
    assert store.match([1, 2, 4, 5, 6], limit=5).tolist() == [0, 1, 3, 4]
    assert store.match([1, 2, 4, 5], limit=3).tolist() == [0, 1, 3]  # at most `limit` tokens
    assert store.match([7], limit=1).tolist() == []
    assert store.positions == [0, 1, 2, 2, 3]
    # storing a chain already there adds nothing
    assert store.add(-1, [1, 2], chain([0, 0]), start=0) == 0
    keys, values = store.gather([np.array([0, 3, 4]), np.array([2])], width=3)[0]
    assert keys.shape == (2, 1, 3, 1)
    assert keys[0, 0, :, 0].tolist() == [10, 40, 50]
    assert keys[1, 0, :1, 0].tolist() == [30]  # then padding
    assert values[0, 0, :, 0].tolist() == [110, 140, 150]


def test_the_store_stops_at_its_budget_and_grows_its_buffers():
    store = PrefixStore(budget_slots=70)
    assert store.add(-1, list(range(50)), chain([float(i) for i in range(50)]), start=0) == 50
    assert store.add(49, list(range(100, 140)), chain([1.0] * 40), start=50) == 20
    assert len(store) == 70
    assert store.match(list(range(50)) + list(range(100, 140)), limit=90).size == 70
    assert store.gather([np.arange(70)], 70)[0][0][0, 0, :50, 0].tolist() == list(range(50))


def test_a_later_call_reuses_the_prompts_an_earlier_one_computed(engines):
    """Coalition B shares a long prefix with A but not with the full context (both drop
    the first document): after A, B computes only what follows their shared prefix; the
    answers equal those of a session without the store (prefix_tree off)."""
    engine = engines["tiny-llama"]
    units = segment.document_units(DOCS)
    a = np.array([[0, 1, 1, 1, 1]], dtype=bool)
    b = np.array([[0, 1, 1, 1, 0]], dtype=bool)
    answers = {}
    for store in (False, True):
        session_engine = tuned(engine, prefix_tree=store, speculative=False, lookup_tokens=0)
        session = session_engine.open_session(QUESTION, DOCS, max_new_tokens=1)
        session.answers(units, a)
        before = session.stats.tokens_computed
        answers[store] = session.answer_tokens(units, a) + session.answer_tokens(units, b)
        cost = session.stats.tokens_computed - before
        prompts = [session.prompt_ids(units, m) for m in (a[0], b[0])]
        shared = next(i for i, (x, y) in enumerate(zip(*prompts, strict=False)) if x != y)
        reused = session.plans(units, a)[0].reach
        if store:
            assert cost == len(prompts[1]) - shared
            assert reused == len(prompts[0]) - 1
        else:
            assert cost == len(prompts[1]) - reused  # only the full-context prefix
            assert shared - reused > 100  # document 2 onwards, at least
    assert answers[True] == answers[False]
