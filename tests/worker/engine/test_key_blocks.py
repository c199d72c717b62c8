"""Block-sparse attention: the plan covers every visible key with fewer computed pairs
than the dense call, and attending block by block gives the dense call's values; the
engine gives the same answers and log-probabilities with it on and off."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers.integrations.sdpa_attention import repeat_kv

from tests.worker.engine.conftest import DOCS, QUESTION, mixed_units, random_masks
from worker.engine.attention.key_blocks import KeyBlocks, computed_pairs, plan_row
from worker.engine.base import EngineOptions
from worker.engine.loading.registry import load_engine


def packed_row(prompts: list[int], region: int, seed: int) -> np.ndarray:
    """Visibility of a tree row: ``region`` reused slots, then each coalition's prompt in
    turn; a coalition sees a random half of the region and its own tokens causally."""
    rng = np.random.default_rng(seed)
    queries = sum(prompts)
    seen = np.zeros((queries, region + queries), dtype=bool)
    at = 0
    for size in prompts:
        keep = rng.random(region) < 0.5
        for j in range(size):
            seen[at + j, :region] = keep
            seen[at + j, region + at : region + at + j + 1] = True
        at += size
    return seen


def test_plan_covers_every_visible_key_and_cuts_the_pairs() -> None:
    seen = packed_row([120, 90, 150, 60], region=400, seed=0)
    blocks = plan_row(seen)
    assert blocks[0].start == 0
    assert blocks[-1].end == seen.shape[0]
    for before, after in zip(blocks, blocks[1:], strict=False):
        assert before.end == after.start
    for block in blocks:
        visible = np.flatnonzero(seen[block.start : block.end].any(axis=0))
        np.testing.assert_array_equal(block.keys, visible)
    dense = seen.shape[0] * seen.shape[1]
    # four coalitions each seeing ~200 region slots and their own tokens: about a quarter
    assert computed_pairs(blocks) < 0.4 * dense
    # the cuts fall between coalitions (a run of one coalition is never split in the middle)
    assert {b.start for b in blocks} <= {0, 120, 210, 360}


def test_a_plain_causal_row_stays_one_block() -> None:
    seen = np.tril(np.ones((50, 50), dtype=bool))
    blocks = plan_row(seen)
    assert len(blocks) == 1
    assert len(blocks[0].keys) == 50


@pytest.mark.parametrize("gqa", [True, False])
def test_block_by_block_equals_the_dense_call(gqa: bool) -> None:
    torch.manual_seed(0)
    seen = np.stack([packed_row([80, 40, 100], 300, seed=s) for s in (1, 2)])
    queries, keys = seen.shape[1:]
    mask = torch.from_numpy(seen)[:, None]
    q = torch.randn(2, 6, queries, 16)
    k, v = torch.randn(2, 2, keys, 16), torch.randn(2, 2, keys, 16)
    dense = F.scaled_dot_product_attention(q, repeat_kv(k, 3), repeat_kv(v, 3), attn_mask=mask)
    if not gqa:
        k, v = repeat_kv(k, 3), repeat_kv(v, 3)
    blocks = KeyBlocks()
    blocks.add(mask, seen)
    sparse = blocks.attend(q, k, v, mask, scale=None, gqa=gqa)
    assert sparse is not None
    torch.testing.assert_close(sparse, dense, atol=1e-5, rtol=1e-5)
    # a mask it was not given is not its business: the caller runs the dense call
    assert blocks.attend(q, k, v, mask.clone(), scale=None, gqa=gqa) is None


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gemma"])
def test_the_engine_gives_the_same_results_with_and_without_blocks(name: str) -> None:
    engine = load_engine(name, device="cpu")
    units = mixed_units()
    masks = random_masks(len(units), 40, seed=7)
    results = []
    for on in (False, True):
        tuned = engine.tuned(EngineOptions(layout="tree", key_blocks=on))
        session = tuned.open_session(QUESTION, DOCS, max_new_tokens=5)
        tokens = session.answer_tokens(units, masks)  # type: ignore[attr-defined]
        scores = session.log_probs(units, masks, session.answers(units, masks)[0])
        results.append((tokens, scores))
    assert results[0][0] == results[1][0]
    np.testing.assert_allclose(results[1][1], results[0][1], rtol=0, atol=1e-4)
