"""Attention written out for a few bf16 queries on a CPU: SDPA's result."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from worker.engine.attention import bf16 as bf16_attention


def _inputs(queries: int, keys: int, dtype: torch.dtype, batch: int = 2):
    generator = torch.Generator().manual_seed(queries * 1000 + keys)
    q = torch.randn(batch, 6, queries, 16, generator=generator)
    k = torch.randn(batch, 2, keys, 16, generator=generator)
    v = torch.randn(batch, 2, keys, 16, generator=generator)
    mask = torch.rand(batch, 1, queries, keys, generator=generator) < 0.7
    mask[..., 0] = True  # every query sees a key (SDPA's fully masked rows differ)
    return q.to(dtype), k.to(dtype), v.to(dtype), mask


@pytest.mark.parametrize(("queries", "keys"), [(1, 9), (7, 50), (33, 200)])
def test_equals_sdpa_in_fp32(queries, keys):
    q, k, v, mask = _inputs(queries, keys, torch.float32)
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)
    got = bf16_attention.attend(q, k, v, mask, None)
    assert torch.allclose(got, expected, atol=1e-5)
    scaled = bf16_attention.attend(q, k, v, mask, 0.3)
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=0.3, enable_gqa=True)
    assert torch.allclose(scaled, expected, atol=1e-5)


def test_bf16_is_within_bf16_error_of_fp32():
    q, k, v, mask = _inputs(33, 700, torch.float32)
    reference = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)
    half = [t.to(torch.bfloat16) for t in (q, k, v)]
    got = bf16_attention.attend(*half, mask, None).float()
    sdpa = F.scaled_dot_product_attention(*half, attn_mask=mask, enable_gqa=True).float()
    ours, theirs = (got - reference).abs().max(), (sdpa - reference).abs().max()
    assert ours < 0.02
    assert ours < 4 * theirs


def test_one_mask_for_every_row_broadcasts():
    q, k, v, mask = _inputs(5, 20, torch.float32)
    one = mask[:1]
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=one, enable_gqa=True)
    assert torch.allclose(bf16_attention.attend(q, k, v, one, None), expected, atol=1e-5)


def test_padding_query_that_sees_nothing_stays_finite():
    q, k, v, mask = _inputs(3, 10, torch.bfloat16)
    mask[0, 0, 1] = False
    assert torch.isfinite(bf16_attention.attend(q, k, v, mask, None)).all()


def test_only_few_bf16_cpu_queries_are_written_out():
    few = torch.zeros(1, 4, bf16_attention.SMALL_QUERIES, 8, dtype=torch.bfloat16)
    many = torch.zeros(1, 4, bf16_attention.SMALL_QUERIES + 1, 8, dtype=torch.bfloat16)
    assert bf16_attention.wanted(few)
    assert not bf16_attention.wanted(many)
    assert not bf16_attention.wanted(few.float())


def test_the_engines_call_picks_the_written_out_path_only_where_wanted():
    q, k, v, mask = _inputs(7, 50, torch.bfloat16)
    written = bf16_attention.attend(q, k, v, mask, None)
    assert torch.equal(bf16_attention.sdpa(q, k, v, mask, None, True), written)
    q, k, v = (t.float() for t in (q, k, v))
    kernel = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)
    assert torch.equal(bf16_attention.sdpa(q, k, v, mask, None, True), kernel)
