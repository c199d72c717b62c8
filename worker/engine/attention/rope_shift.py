"""Moving cached RoPE keys to other positions: fast mode's closed-up coalitions.

A RoPE key at position p is its unrotated key turned by p times each frequency; turning it
by -d gives the key the token would have at p - d, exactly up to rounding. So a kept
token's cached key can take the position it has in the coalition's own prompt (every
removed document's gap closed) without recomputing the token. Values carry no position.
Measured on the real models (``bench/fast_positions.py``, docs/performance.md): gaps of
positions, not only the removed text's trace in the kept states, are what made fast mode's
answers differ from the exact engine's.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch

from worker.engine.batching.kvcache import KV


def layer_kinds(config: Any) -> list[str]:
    """Each layer's attention kind (Gemma 3 gives its sliding and full layers their own
    RoPE frequencies); one kind for models that have no ``layer_types``."""
    kinds = getattr(config, "layer_types", None)
    return list(kinds) if kinds else ["full_attention"] * int(config.num_hidden_layers)


def turns(base: Any, shifts: torch.Tensor, kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin ``(rows, 1, width, rotary_dim)`` of turning by ``shifts`` positions, from
    the model's own rotary embedding, with its attention scaling divided out (it scales
    queries and keys at rotation time; a key turned again must not be scaled twice)."""
    rotary = base.rotary_emb
    probe = torch.zeros(1, device=shifts.device, dtype=torch.float32)
    takes_kind = "layer_type" in inspect.signature(rotary.forward).parameters
    cos, sin = rotary(probe, shifts, kind) if takes_kind else rotary(probe, shifts)
    scale = torch.sqrt(cos.float() ** 2 + sin.float() ** 2)
    return (cos.float() / scale)[:, None], (sin.float() / scale)[:, None]


def move_keys(base: Any, config: Any, layers: list[KV], shifts: torch.Tensor) -> None:
    """Move every layer's keys ``(rows, kv_heads, slots, head_dim)`` back ``shifts``
    ``(rows, width)`` positions, in place (the first ``width`` slots; turned in fp32, stored
    in the keys' dtype); values carry no position. A partial rotary embedding turns only
    its leading dimensions."""
    by_kind: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    width = shifts.shape[1]
    for kind, (keys, _) in zip(layer_kinds(config), layers, strict=True):
        if kind not in by_kind:
            by_kind[kind] = turns(base, shifts, kind)
        cos, sin = by_kind[kind]
        part = keys[:, :, :width, : cos.shape[-1]]
        turned = part if part.dtype == torch.float32 else part.float()  # a copy unless fp32
        half = _rotate_half(turned)
        turned.mul_(cos).addcmul_(half, sin, value=-1.0)  # a turn by -shift
        if turned is not part:
            part.copy_(turned)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    """transformers' convention: the second half of the dimensions pairs with the first."""
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)
