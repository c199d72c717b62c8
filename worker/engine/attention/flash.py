"""Attention over a "linear rows" KV buffer: FlashAttention 2 on CUDA, a torch reference elsewhere.

In the linear-rows layout every batch row is one sequence in a preallocated buffer
``(B, S_cache, Hkv, D)`` with its own valid length ``cache_seqlens[b]``. A forward pass
appends ``Sq`` new tokens to every row (rows with fewer real tokens are right-padded; the
caller ignores their extra queries and does not advance their length past the real
tokens, so the padded keys are overwritten by the next pass) and attends causally.

FlashAttention 2's ``flash_attn_with_kvcache`` does exactly this in one kernel: it writes
the new keys and values into the buffer at each row's offset and attends over the row's
valid prefix, so no mask and no per-row copy is ever built. It needs CUDA and the
``flash-attn`` package, so everywhere else ``reference_kvcache_attention`` computes the
same thing with PyTorch's SDPA. Both take the same arguments and mean the same thing,
which lets the CPU tests check the plumbing the GPU runs.

Semantics (``flash_attn_with_kvcache`` with ``causal=True``): query ``i`` of row ``b`` sits
at absolute position ``a = cache_seqlens[b] + i`` and sees keys ``j <= a`` (the causal
mask aligned to the bottom right), and with a sliding ``window`` only keys with
``a - j < window`` (transformers' ``sliding_window`` convention, which its own
FlashAttention integration passes as ``window_size=(window - 1, window - 1)``). ``softcap``
squashes the scaled logits to ``softcap * tanh(logits / softcap)`` before the softmax
(Gemma 2). Grouped-query attention: query head ``h`` reads kv head ``h // (H // Hkv)``.
"""

from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F

FLASH = "flash_attention_2"
SDPA = "sdpa"


class KvKernel(Protocol):
    """Append ``k``/``v`` to each row of the buffer in place, then attend causally.

    Shapes: ``q`` (B, Sq, H, D); ``k_cache``/``v_cache`` (B, S_cache, Hkv, D); ``k``/``v``
    (B, Sq, Hkv, D); ``cache_seqlens`` (B,) int32, each row's valid slots before the call.
    Returns (B, Sq, H, D). Every row needs ``cache_seqlens[b] + Sq <= S_cache``.
    """

    def __call__(
        self,
        q: torch.Tensor,
        k_cache: torch.Tensor,
        v_cache: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        cache_seqlens: torch.Tensor,
        *,
        softmax_scale: float,
        window: int | None = None,
        softcap: float | None = None,
    ) -> torch.Tensor: ...


def reference_kvcache_attention(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cache_seqlens: torch.Tensor,
    *,
    softmax_scale: float,
    window: int | None = None,
    softcap: float | None = None,
) -> torch.Tensor:
    """``flash_attn_with_kvcache(causal=True)`` in plain PyTorch, for CPUs and GPUs without
    flash-attn.

    Each row's keys are gathered from the lowest slot any of its queries can see (0, or
    the window's start for the first query) up to its new end, so a sliding-window layer
    reads about ``window + Sq`` slots per row instead of the whole prefix. Slots past a
    row's end (gathered only to make the rows equally long) are zeroed as well as masked
    out: the buffer may hold NaN there, and a NaN key or value would poison the softmax
    even under a mask. Without ``softcap`` one SDPA call with a boolean mask and native
    grouped-query attention does the work; SDPA has no logit hook, so with ``softcap`` the
    scores are computed explicitly (in at least float32, as the kernel accumulates).
    """
    _check(q, k_cache, v_cache, k, v, cache_seqlens, window, softcap)
    starts = cache_seqlens.to(device=q.device, dtype=torch.long)
    positions = starts[:, None] + torch.arange(q.shape[1], device=q.device)  # (B, Sq) absolute
    _write(k_cache, v_cache, k, v, positions)
    if q.shape[1] == 0:
        return q.new_empty((*q.shape[:3], v_cache.shape[3]))
    keys, values, mask = _visible(k_cache, v_cache, positions, window)
    qh, kh, vh = q.transpose(1, 2), keys.transpose(1, 2), values.transpose(1, 2)
    if softcap:
        out = _softcapped(qh, kh, vh, mask, softmax_scale, softcap)
    else:
        out = F.scaled_dot_product_attention(
            qh, kh, vh, attn_mask=mask, scale=softmax_scale, enable_gqa=True
        )
    return out.transpose(1, 2).contiguous()


def flash_kvcache_attention(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cache_seqlens: torch.Tensor,
    *,
    softmax_scale: float,
    window: int | None = None,
    softcap: float | None = None,
) -> torch.Tensor:
    """The same step on FlashAttention 2's ``flash_attn_with_kvcache`` (CUDA, fp16/bf16).

    flash-attn is imported here rather than at module level so the engine (and its CPU
    tests) never need the package. The kernel wants ``cache_seqlens`` as a contiguous int32
    tensor on the GPU, and the window as inclusive (left, right) offsets, which is why the
    window of ``w`` positions becomes ``(w - 1, w - 1)`` (the right half is moot under
    ``causal=True``). It does not check the buffer's capacity (that would cost a device
    sync each call), so the caller must keep ``cache_seqlens + Sq <= S_cache``.
    """
    from flash_attn import flash_attn_with_kvcache

    _check(q, k_cache, v_cache, k, v, cache_seqlens, window, softcap)
    seqlens = cache_seqlens.to(device=q.device, dtype=torch.int32).contiguous()
    out: torch.Tensor = flash_attn_with_kvcache(
        q,
        k_cache,
        v_cache,
        k=k,
        v=v,
        cache_seqlens=seqlens,
        softmax_scale=softmax_scale,
        causal=True,
        window_size=(-1, -1) if window is None else (window - 1, window - 1),
        softcap=0.0 if softcap is None else float(softcap),
    )
    return out


def pick_kernel(device: torch.device) -> tuple[str, KvKernel]:
    """FlashAttention 2 when ``device`` is a CUDA GPU it supports (Ampere or newer: compute
    capability 8.0) and flash-attn imports; the reference otherwise.

    The import is attempted rather than merely located: a flash-attn wheel built against
    another torch is found but fails to load (an ``ImportError`` on an undefined symbol),
    and then the reference is the only kernel that works.
    """
    if device.type == "cuda" and _capability(device) >= (8, 0):
        try:
            import flash_attn  # noqa: F401
        except ImportError:
            pass
        else:
            return FLASH, flash_kvcache_attention
    return SDPA, reference_kvcache_attention


def _capability(device: torch.device) -> tuple[int, int]:
    major, minor = torch.cuda.get_device_capability(device)
    return int(major), int(minor)


def _write(
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    positions: torch.Tensor,
) -> None:
    """The new keys and values into each row's buffer at their absolute positions."""
    if positions.shape[1] and int(positions[:, -1].max()) >= k_cache.shape[1]:
        raise ValueError(
            f"cache_seqlens + Sq reaches {int(positions[:, -1].max()) + 1} but the buffer "
            f"holds {k_cache.shape[1]} slots"
        )
    rows = torch.arange(positions.shape[0], device=positions.device)[:, None]
    k_cache[rows, positions] = k
    v_cache[rows, positions] = v


def _visible(
    k_cache: torch.Tensor, v_cache: torch.Tensor, positions: torch.Tensor, window: int | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per row the keys and values from the lowest slot any query sees to the row's end
    (zeroed past the end), and the (B, 1, Sq, span) mask shared by every head."""
    starts, ends = positions[:, 0], positions[:, -1] + 1
    first = torch.zeros_like(starts) if window is None else (starts - window + 1).clamp(min=0)
    span = int((ends - first).max())
    key_pos = first[:, None] + torch.arange(span, device=positions.device)  # (B, span)
    inside = key_pos < ends[:, None]
    slots = key_pos.clamp(max=k_cache.shape[1] - 1)
    rows = torch.arange(positions.shape[0], device=positions.device)[:, None]
    keys = k_cache[rows, slots].masked_fill_(~inside[:, :, None, None], 0)
    values = v_cache[rows, slots].masked_fill_(~inside[:, :, None, None], 0)
    distance = positions[:, :, None] - key_pos[:, None, :]  # (B, Sq, span)
    mask = distance >= 0
    if window is not None:
        mask &= distance < window
    return keys, values, mask[:, None]


def _softcapped(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor,
    scale: float,
    softcap: float,
) -> torch.Tensor:
    """Attention with capped logits over (B, H, Sq, D) queries and (B, Hkv, L, D) keys,
    grouping query heads by kv head instead of copying the kv heads."""
    batch, heads, steps, _ = q.shape
    kv_heads = k.shape[1]
    work = torch.promote_types(q.dtype, torch.float32)
    grouped = q.reshape(batch, kv_heads, heads // kv_heads, steps, q.shape[3]).to(work)
    scores = torch.einsum("bkgqd,bkjd->bkgqj", grouped, k.to(work)) * scale
    scores = softcap * torch.tanh(scores / softcap)
    scores = scores.masked_fill(~mask[:, :, None], float("-inf"))
    out = torch.einsum("bkgqj,bkjd->bkgqd", scores.softmax(dim=-1), v.to(work))
    return out.reshape(batch, heads, steps, v.shape[3]).to(q.dtype)


def _check(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cache_seqlens: torch.Tensor,
    window: int | None,
    softcap: float | None,
) -> None:
    """Shape and argument errors, raised the same way on both kernels (checks that need no
    device sync only)."""
    batch, steps, heads, dim = q.shape
    _, _, kv_heads, _ = k_cache.shape
    if k_cache.shape[:3] != v_cache.shape[:3] or k_cache.shape[0] != batch:
        raise ValueError(f"k_cache {tuple(k_cache.shape)} / v_cache {tuple(v_cache.shape)}")
    if k.shape != (batch, steps, kv_heads, dim) or k_cache.shape[3] != dim:
        raise ValueError(f"k {tuple(k.shape)} does not fit q {tuple(q.shape)} and k_cache")
    if v.shape != (batch, steps, kv_heads, v_cache.shape[3]):
        raise ValueError(f"v {tuple(v.shape)} does not fit v_cache {tuple(v_cache.shape)}")
    if heads % kv_heads:
        raise ValueError(f"{heads} query heads are not a multiple of {kv_heads} kv heads")
    if cache_seqlens.shape != (batch,) or cache_seqlens.is_floating_point():
        raise ValueError(f"cache_seqlens must be ({batch},) integers, got {cache_seqlens}")
    if window is not None and window < 1:
        raise ValueError(f"window must be positive, got {window}")
    if softcap is not None and softcap < 0:
        raise ValueError(f"softcap must be >= 0 (0 means none), got {softcap}")
