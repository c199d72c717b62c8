"""The attention function the causal engine runs, registered with transformers by name.

transformers' SDPA path repeats every key and value head for grouped-query attention when
a mask is given (SmolLM2: 3 kv heads -> 9, over every cached slot, in every layer, on every
pass); on a CPU that copy costs about a sixth of a fast-mode job. PyTorch's SDPA computes
grouped-query attention itself (``enable_gqa``), so on a CPU, with the engine's explicit
boolean masks, the copy is skipped (CUDA's fused kernels take a mask only without it). The
engine's masks say exactly which keys each query sees: with ``EngineOptions.key_blocks``
the tree layout's passes also hand their block plans (``key_blocks``) through the same
keyword route, and each block of queries attends to its own keys only; otherwise long
passes run in blocks of queries that skip the keys after them (the masks are causal by
slot). Calls without an explicit mask (plain ``generate`` on the same model)
go to transformers' own SDPA function unchanged, so the model computes exactly what it did.
The linear layout (``batching.linear``) passes its row buffers as a keyword argument, which
transformers hands through to this function; then its kernel (FlashAttention 2 on CUDA)
does the work.
"""

from __future__ import annotations

import itertools
from typing import Any

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from worker.engine.attention import bf16 as bf16_attention
from worker.engine.attention.key_blocks import KeyBlocks

NAME = "textgenshap_sdpa"
BLOCK_QUERIES = 128  # the smallest block of queries worth a call of its own
MAX_BLOCKS = 8


def engine_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """SDPA over (batch, heads, queries, dim) with the engine's boolean mask, no head copies;
    or, given ``linear_rows`` (``batching.linear.LinearRows``), its kernel over those rows."""
    rows = kwargs.pop("linear_rows", None)
    if rows is not None:
        window, softcap = kwargs.get("sliding_window"), kwargs.get("softcap")
        return rows.attend(module, query, key, value, scaling, window, softcap), None
    if attention_mask is None or attention_mask.dtype != torch.bool or kwargs.get("softcap"):
        out, _ = sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
        return out, None
    gqa = query.device.type == "cpu"
    if not gqa:  # CUDA's fused kernels take a mask only without enable_gqa
        groups = query.shape[1] // key.shape[1]
        key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    blocks: KeyBlocks | None = kwargs.get("key_blocks")
    sparse = None
    if blocks is not None:
        sparse = blocks.attend(query, key, value, attention_mask, scaling, gqa)
    out = (
        sparse
        if sparse is not None
        else _causal_blocks(query, key, value, attention_mask, scaling, gqa)
    )
    return out.transpose(1, 2), None


def _causal_blocks(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    mask: torch.Tensor,
    scale: float | None,
    gqa: bool,
) -> torch.Tensor:
    """SDPA in blocks of queries, each over the keys up to its last query only.

    The engine's masks are causal by slot: the pass's queries are the last slots of the
    cache, in order, and a node's ancestors come before it. SDPA computes every masked
    pair anyway, so a pass over W new nodes computes W x W node pairs where at most half
    can be visible; cutting the queries into blocks that stop at their own last slot
    skips most of the rest (a third of the attention work of a long prompt pass).
    """
    queries, keys = query.shape[-2], key.shape[-2]
    blocks = min(MAX_BLOCKS, queries // BLOCK_QUERIES)
    if blocks < 2:
        return bf16_attention.sdpa(query, key, value, mask, scale, gqa)
    edges = [queries * j // blocks for j in range(blocks + 1)]
    out = []
    for start, end in itertools.pairwise(edges):
        limit = keys - queries + end
        out.append(
            bf16_attention.sdpa(
                query[..., start:end, :],
                key[..., :limit, :],
                value[..., :limit, :],
                mask[..., start:end, :limit],
                scale,
                gqa,
            )
        )
    return torch.cat(out, dim=-2)


def install(model: Any) -> str:
    """Switch ``model`` (loaded with SDPA) to the engine's attention; returns the name of the
    kernel family it runs on, for reporting."""
    AttentionInterface.register(NAME, engine_attention)
    AttentionMaskInterface.register(NAME, sdpa_mask)
    model.set_attn_implementation(NAME)
    return "sdpa"
