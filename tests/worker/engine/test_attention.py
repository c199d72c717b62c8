"""The engine's attention function: SDPA in causal blocks over the engine's masks, grouped
query heads without copies on a CPU, transformers' own SDPA for plain calls."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward

from worker.engine.attention.sdpa import _causal_blocks, engine_attention


def causal_by_slot_mask(rows: int, queries: int, keys: int, seed: int) -> torch.Tensor:
    """A random mask of the engine's kind: the queries are the last slots, and a query
    sees some of the slots before it and always itself."""
    generator = torch.Generator().manual_seed(seed)
    mask = torch.rand((rows, 1, queries, keys), generator=generator) < 0.4
    slot = keys - queries + torch.arange(queries)
    mask &= torch.arange(keys)[None, :] <= slot[:, None]
    mask[..., torch.arange(queries), slot] = True
    return mask


@pytest.mark.parametrize("gqa", [True, False])
def test_blocks_equal_one_call_over_the_whole_mask(gqa):
    torch.manual_seed(0)
    q = torch.randn(2, 6, 700, 16)
    k, v = torch.randn(2, 2, 1000, 16), torch.randn(2, 2, 1000, 16)
    mask = causal_by_slot_mask(2, 700, 1000, seed=1)
    whole = F.scaled_dot_product_attention(q, repeat_kv(k, 3), repeat_kv(v, 3), attn_mask=mask)
    if not gqa:
        k, v = repeat_kv(k, 3), repeat_kv(v, 3)
    blocks = _causal_blocks(q, k, v, mask, scale=None, gqa=gqa)
    torch.testing.assert_close(blocks, whole, atol=1e-5, rtol=1e-5)


def test_plain_calls_are_transformers_sdpa():
    module = torch.nn.Module()
    module.is_causal = True
    q, k, v = torch.randn(1, 4, 9, 8), torch.randn(1, 2, 9, 8), torch.randn(1, 2, 9, 8)
    module.num_key_value_groups = 2
    mine, _ = engine_attention(module, q, k, v, None, scaling=0.3)
    theirs, _ = sdpa_attention_forward(module, q, k, v, None, scaling=0.3)
    torch.testing.assert_close(mine, theirs, atol=0, rtol=0)
