"""Attention for a few bf16 queries on a CPU, as two batched products and a softmax.

PyTorch's CPU SDPA kernel for bf16 has a large fixed cost per call: for 33 queries (a
fast-mode coalition's question tail and draft) over 733 keys it took 1.6 ms, against
0.7 ms for the same attention written out here and 0.9 ms for SDPA in fp32; for one
query (a decoding step) 0.78 ms against 0.13 ms. From about 48 queries on, SDPA's
blocked kernel is the faster again. Only fast mode's bf16 twin (``loading.bf16_twin``) runs bf16
on a CPU; the scores are rounded to bf16 before the softmax (accumulated in fp32), which
doubles SDPA's bf16 error (0.003 against 0.0014 on unit-variance inputs) and is part of
the approximation fast mode's agreement measures.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

SMALL_QUERIES = 40  # at most this many queries per call take the products below


def wanted(query: torch.Tensor) -> bool:
    """Whether a call on these queries is better written out than given to SDPA."""
    return (
        query.dtype == torch.bfloat16
        and query.device.type == "cpu"
        and query.shape[-2] <= SMALL_QUERIES
    )


def sdpa(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    mask: torch.Tensor,
    scale: float | None,
    gqa: bool,
) -> torch.Tensor:
    """The engine's masked SDPA call: written out (``attend``) where that is faster
    (``wanted``), PyTorch's kernel otherwise."""
    if wanted(query):
        return attend(query, key, value, mask, scale)
    return F.scaled_dot_product_attention(
        query, key, value, attn_mask=mask, scale=scale, enable_gqa=gqa
    )


def attend(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    mask: torch.Tensor,
    scale: float | None,
) -> torch.Tensor:
    """SDPA's result for ``query`` (batch, heads, Q, dim) over ``key`` and ``value``
    (batch, kv_heads, K, dim; grouped-query heads as ``enable_gqa`` pairs them: query
    head h reads kv head ``h // (heads // kv_heads)``) under the boolean ``mask``
    (broadcastable to (batch, 1, Q, K); True: seen). A query that sees no key gets the
    average of every value instead of SDPA's zeros: only padding has none, and its
    states are never read."""
    batch, heads, queries, dim = query.shape
    kv_heads, keys = key.shape[1], key.shape[2]
    groups = heads // kv_heads
    scale = dim**-0.5 if scale is None else scale
    grouped = (query * scale).reshape(batch * kv_heads, groups * queries, dim)
    scores = torch.bmm(grouped, key.reshape(batch * kv_heads, keys, dim).transpose(1, 2))
    seen = mask.expand(batch, 1, queries, keys).reshape(batch, 1, 1, queries, keys)
    scores = scores.view(batch, kv_heads, groups, queries, keys)
    scores.masked_fill_(~seen, torch.finfo(scores.dtype).min)
    weights = F.softmax(scores, dim=-1).view(batch * kv_heads, groups * queries, keys)
    out = torch.bmm(weights, value.reshape(batch * kv_heads, keys, dim))
    return out.view(batch, heads, queries, dim)
