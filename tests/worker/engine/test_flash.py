"""The linear-rows KV-cache attention kernel: the torch reference against a naive float64
computation, its in-place cache writes, its blindness to garbage past each row's end, its
chunked/incremental consistency, and the exact call the CUDA path makes to flash-attn."""

from __future__ import annotations

import itertools
import math
import sys
import types
from typing import Any

import numpy as np
import pytest
import torch

from worker.engine.attention.flash import (
    flash_kvcache_attention,
    pick_kernel,
    reference_kvcache_attention,
)

D = 8
SCALE = 1 / math.sqrt(D)


def naive(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    seqlens: list[int],
    window: int | None,
    softcap: float | None,
) -> np.ndarray:
    """Explicit loops in float64 over the cache *before* the call plus the new keys."""
    qn, kc, vc, kn, vn = (t.double().numpy() for t in (q, k_cache, v_cache, k, v))
    batch, steps, heads, _ = qn.shape
    group = heads // kc.shape[2]
    out = np.zeros((batch, steps, heads, vc.shape[3]))
    for b, c in enumerate(seqlens):
        keys = np.concatenate([kc[b, :c], kn[b]])
        values = np.concatenate([vc[b, :c], vn[b]])
        for h in range(heads):
            for i in range(steps):
                a = c + i
                seen = [
                    j for j in range(len(keys)) if j <= a and (window is None or a - j < window)
                ]
                logits = np.array([qn[b, i, h] @ keys[j, h // group] for j in seen]) * SCALE
                if softcap is not None:
                    logits = softcap * np.tanh(logits / softcap)
                weights = np.exp(logits - logits.max())
                weights /= weights.sum()
                out[b, i, h] = weights @ values[seen, h // group]
    return out


def make(
    gen: torch.Generator,
    seqlens: list[int],
    steps: int,
    heads: int,
    kv_heads: int,
    capacity: int,
    spread: float = 2.0,
) -> dict[str, torch.Tensor]:
    """Random query/new keys/buffers; ``spread`` makes logits large enough for softcap to bite."""
    batch = len(seqlens)

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen) * spread

    return {
        "q": rand(batch, steps, heads, D),
        "k_cache": rand(batch, capacity, kv_heads, D),
        "v_cache": rand(batch, capacity, kv_heads, D) / spread,
        "k": rand(batch, steps, kv_heads, D),
        "v": rand(batch, steps, kv_heads, D) / spread,
        "cache_seqlens": torch.tensor(seqlens, dtype=torch.int32),
    }


def clone(args: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {name: t.clone() for name, t in args.items()}


CASES = list(
    itertools.product(
        [1, 4],  # Sq
        [(2, 2), (4, 2), (6, 2)],  # (H, Hkv): GQA ratios 1, 2, 3
        [None, 1, 3],  # window (all smaller than the longer rows)
        [None, 3.0],  # softcap
    )
)


@pytest.mark.parametrize(
    ("case", "steps", "heads", "window", "softcap"), [(n, *case) for n, case in enumerate(CASES)]
)
def test_reference_matches_naive_float64(
    case: int, steps: int, heads: tuple[int, int], window: int | None, softcap: float | None
) -> None:
    gen = torch.Generator().manual_seed(case)
    for seqlens in ([0, 7, 3], [5], [0, 0], [9, 1, 0, 12]):
        args = make(gen, seqlens, steps, *heads, capacity=20)
        before = clone(args)
        expected = naive(
            before["q"],
            before["k_cache"],
            before["v_cache"],
            before["k"],
            before["v"],
            seqlens,
            window,
            softcap,
        )
        out = reference_kvcache_attention(
            **args, softmax_scale=SCALE, window=window, softcap=softcap
        )
        assert out.shape == (len(seqlens), steps, heads[0], D)
        assert out.dtype == torch.float32
        np.testing.assert_allclose(out.double().numpy(), expected, atol=1e-5, rtol=1e-5)


def test_window_and_softcap_change_the_result() -> None:
    """Guards the comparison above against a reference that ignores the two options."""
    gen = torch.Generator().manual_seed(1)
    args = make(gen, [9, 12], 3, 4, 2, capacity=16)
    plain = reference_kvcache_attention(**clone(args), softmax_scale=SCALE)
    windowed = reference_kvcache_attention(**clone(args), softmax_scale=SCALE, window=3)
    capped = reference_kvcache_attention(**clone(args), softmax_scale=SCALE, softcap=1.0)
    assert (windowed - plain).abs().max() > 1e-2
    assert (capped - plain).abs().max() > 1e-2
    zero_cap = reference_kvcache_attention(**clone(args), softmax_scale=SCALE, softcap=0.0)
    torch.testing.assert_close(zero_cap, plain, rtol=0, atol=1e-6)


def test_new_keys_and_values_are_written_in_place() -> None:
    gen = torch.Generator().manual_seed(2)
    seqlens, steps = [0, 6, 3], 4
    args = make(gen, seqlens, steps, 4, 2, capacity=12)
    before = clone(args)
    reference_kvcache_attention(**args, softmax_scale=SCALE, window=2)
    for name, new in (("k_cache", "k"), ("v_cache", "v")):
        cache, old = args[name], before[name]
        for b, c in enumerate(seqlens):
            assert torch.equal(cache[b, c : c + steps], args[new][b])
            assert torch.equal(cache[b, :c], old[b, :c])
            assert torch.equal(cache[b, c + steps :], old[b, c + steps :])
    for name in ("q", "k", "v", "cache_seqlens"):
        assert torch.equal(args[name], before[name])


@pytest.mark.parametrize(("window", "softcap"), [(None, None), (3, None), (None, 2.0), (2, 2.0)])
def test_garbage_past_each_row_is_ignored(window: int | None, softcap: float | None) -> None:
    gen = torch.Generator().manual_seed(3)
    seqlens, steps, capacity = [0, 5, 2], 3, 14
    clean = make(gen, seqlens, steps, 6, 2, capacity=capacity)
    expected = reference_kvcache_attention(
        **clone(clean), softmax_scale=SCALE, window=window, softcap=softcap
    )
    for junk in (float("nan"), 1e30, float("-inf")):
        dirty = clone(clean)
        for b, c in enumerate(seqlens):
            dirty["k_cache"][b, c:] = junk
            dirty["v_cache"][b, c:] = -junk
        out = reference_kvcache_attention(
            **dirty, softmax_scale=SCALE, window=window, softcap=softcap
        )
        assert torch.isfinite(out).all()
        torch.testing.assert_close(out, expected, rtol=0, atol=0)


@pytest.mark.parametrize(("window", "softcap"), [(None, None), (4, None), (5, 3.0)])
def test_chunked_rows_match_one_call(window: int | None, softcap: float | None) -> None:
    """Prefill 10 then steps of 1 and 3 (right-padded where a row has fewer real tokens)
    gives each real token the output one call over the whole row gives it."""
    gen = torch.Generator().manual_seed(4)
    total, heads, kv_heads, capacity = 17, 6, 2, 24
    q = torch.randn(2, total, heads, D, generator=gen) * 2
    k = torch.randn(2, total, kv_heads, D, generator=gen) * 2
    v = torch.randn(2, total, kv_heads, D, generator=gen)
    options: dict[str, Any] = {"softmax_scale": SCALE, "window": window, "softcap": softcap}

    def empty() -> tuple[torch.Tensor, torch.Tensor]:
        junk = torch.full((2, capacity, kv_heads, D), float("nan"))
        return junk, junk.clone()

    k_cache, v_cache = empty()
    zero = torch.zeros(2, dtype=torch.int32)
    whole = reference_kvcache_attention(q, k_cache, v_cache, k, v, zero, **options)

    # Real tokens each row appends per pass; a pass is as long as its longest row.
    plan = [(10, 10), (1, 1), (3, 1), (3, 3), (0, 2)]
    k_cache, v_cache = empty()
    done = [0, 0]
    got = torch.full_like(whole, float("nan"))
    for counts in plan:
        steps = max(counts)
        pad = [
            [done[b] + i if i < counts[b] else total - 1 for i in range(steps)] for b in range(2)
        ]  # padded slots carry some other token's q/k/v: pure garbage for that row
        rows = torch.arange(2)[:, None]
        index = torch.tensor(pad)
        seqlens = torch.tensor(done, dtype=torch.int32)
        out = reference_kvcache_attention(
            q[rows, index], k_cache, v_cache, k[rows, index], v[rows, index], seqlens, **options
        )
        for b in range(2):
            got[b, done[b] : done[b] + counts[b]] = out[b, : counts[b]]
            done[b] += counts[b]
    assert done == [17, 17]
    torch.testing.assert_close(got, whole, rtol=1e-5, atol=1e-6)


def test_too_small_buffer_and_bad_arguments_raise() -> None:
    gen = torch.Generator().manual_seed(5)
    args = make(gen, [0, 9], 3, 4, 2, capacity=11)
    with pytest.raises(ValueError, match="buffer holds 11"):
        reference_kvcache_attention(**clone(args), softmax_scale=SCALE)
    args = make(gen, [0, 2], 3, 4, 2, capacity=11)
    with pytest.raises(ValueError, match="window"):
        reference_kvcache_attention(**clone(args), softmax_scale=SCALE, window=0)
    with pytest.raises(ValueError, match="multiple"):
        reference_kvcache_attention(
            **(clone(args) | {"q": torch.zeros(2, 3, 3, D)}), softmax_scale=SCALE
        )
    with pytest.raises(ValueError, match="cache_seqlens"):
        reference_kvcache_attention(
            **(clone(args) | {"cache_seqlens": torch.zeros(2)}), softmax_scale=SCALE
        )


def test_pick_kernel_on_cpu_is_the_reference() -> None:
    assert pick_kernel(torch.device("cpu")) == ("sdpa", reference_kvcache_attention)


def _fake_flash_attn(calls: list[dict[str, Any]]) -> types.ModuleType:
    """A stand-in ``flash_attn`` whose ``flash_attn_with_kvcache`` has the documented
    signature (flash_attn/flash_attn_interface.py, flash-attn 2.6+), so a misspelt keyword
    fails, records its arguments and answers with the reference."""
    module = types.ModuleType("flash_attn")

    def flash_attn_with_kvcache(  # mirrors the library
        q: Any,
        k_cache: Any,
        v_cache: Any,
        k: Any = None,
        v: Any = None,
        rotary_cos: Any = None,
        rotary_sin: Any = None,
        cache_seqlens: Any = None,
        cache_batch_idx: Any = None,
        cache_leftpad: Any = None,
        block_table: Any = None,
        softmax_scale: Any = None,
        causal: bool = False,
        window_size: Any = (-1, -1),
        softcap: float = 0.0,
        rotary_interleaved: bool = True,
        alibi_slopes: Any = None,
        num_splits: int = 0,
        return_softmax_lse: bool = False,
    ) -> torch.Tensor:
        calls.append({"args": (q, k_cache, v_cache), "locals": dict(locals())})
        left = window_size[0]
        return reference_kvcache_attention(
            q,
            k_cache,
            v_cache,
            k,
            v,
            cache_seqlens,
            softmax_scale=softmax_scale,
            window=None if left < 0 else left + 1,
            softcap=softcap or None,
        )

    module.flash_attn_with_kvcache = flash_attn_with_kvcache  # type: ignore[attr-defined]
    return module


@pytest.mark.parametrize(
    ("window", "softcap", "window_size", "cap"),
    [
        (None, None, (-1, -1), 0.0),
        (4, None, (3, 3), 0.0),
        (1, 30.0, (0, 0), 30.0),
    ],
)
def test_flash_path_passes_the_documented_arguments(
    monkeypatch: pytest.MonkeyPatch,
    window: int | None,
    softcap: float | None,
    window_size: tuple[int, int],
    cap: float,
) -> None:
    calls: list[dict[str, Any]] = []
    monkeypatch.setitem(sys.modules, "flash_attn", _fake_flash_attn(calls))
    gen = torch.Generator().manual_seed(6)
    args = make(gen, [0, 7, 3], 2, 6, 2, capacity=12)
    args["cache_seqlens"] = args["cache_seqlens"].long()  # the wrapper must make it int32
    mirror = clone(args)

    out = flash_kvcache_attention(**args, softmax_scale=SCALE, window=window, softcap=softcap)

    (call,) = calls
    seen = call["locals"]
    assert call["args"][0] is args["q"]
    assert call["args"][1] is args["k_cache"]
    assert call["args"][2] is args["v_cache"]
    assert seen["k"] is args["k"]
    assert seen["v"] is args["v"]
    assert seen["cache_seqlens"].dtype == torch.int32
    assert seen["cache_seqlens"].is_contiguous()
    assert seen["cache_seqlens"].tolist() == [0, 7, 3]
    assert seen["softmax_scale"] == SCALE
    assert seen["causal"] is True
    assert seen["window_size"] == window_size
    assert isinstance(seen["window_size"], tuple)
    assert seen["softcap"] == cap
    assert isinstance(seen["softcap"], float)
    untouched = {
        "rotary_cos": None,
        "rotary_sin": None,
        "cache_batch_idx": None,
        "cache_leftpad": None,
        "block_table": None,
        "alibi_slopes": None,
        "return_softmax_lse": False,
    }
    assert {name: seen[name] for name in untouched} == untouched

    expected = reference_kvcache_attention(
        **mirror, softmax_scale=SCALE, window=window, softcap=softcap
    )
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    torch.testing.assert_close(args["k_cache"], mirror["k_cache"], rtol=0, atol=0)


def test_pick_kernel_on_cuda_follows_flash_attn(monkeypatch: pytest.MonkeyPatch) -> None:
    """No CUDA call happens: the GPU's compute capability is faked, and choosing only
    imports flash_attn (faked or blocked here)."""
    cuda = torch.device("cuda")
    capability = [(8, 0)]
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device: capability[0])
    monkeypatch.setitem(sys.modules, "flash_attn", _fake_flash_attn([]))
    assert pick_kernel(cuda) == ("flash_attention_2", flash_kvcache_attention)
    assert pick_kernel(torch.device("cpu")) == ("sdpa", reference_kvcache_attention)
    capability[0] = (7, 5)  # a Turing GPU: FlashAttention 2 needs Ampere or newer
    assert pick_kernel(cuda) == ("sdpa", reference_kvcache_attention)
    capability[0] = (9, 0)
    monkeypatch.setitem(sys.modules, "flash_attn", None)  # makes ``import flash_attn`` fail
    assert pick_kernel(cuda) == ("sdpa", reference_kvcache_attention)
