"""Explicit 4-D attention masks over a KV cache whose slots carry their own positions.

Every cache slot has a position id and a validity bit per row. A query sees a key when the
key is valid, not later than the query, inside the sliding window (for sliding layers) and,
for draft-tree nodes, on the query's own branch. Because visibility is decided by
positions rather than by slot order, rows of a batch can reuse different lengths of the
shared full-context cache, carry padding anywhere, and verify a whole draft tree in one
pass, and the computation is still exactly that of each coalition's prompt on its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class Slots:
    """Positions ``pos`` (B, S) and validity ``valid`` (B, S) of the cache's key slots."""

    pos: torch.Tensor
    valid: torch.Tensor

    def extend(self, pos: torch.Tensor, valid: torch.Tensor) -> Slots:
        return Slots(torch.cat([self.pos, pos], 1), torch.cat([self.valid, valid], 1))

    def select(self, rows: torch.Tensor) -> Slots:
        return Slots(self.pos[rows], self.valid[rows])


@dataclass(frozen=True)
class MaskSpec:
    """How a model wants its mask: bool (SDPA) or additive float (eager), and whether it has
    sliding-window layers (then a dict keyed by layer type)."""

    additive: bool
    dtype: torch.dtype
    sliding_window: int | None

    @classmethod
    def for_model(cls, model: Any) -> MaskSpec:
        config = model.config.get_text_config()
        types = getattr(config, "layer_types", None) or []
        window = getattr(config, "sliding_window", None) if "sliding_attention" in types else None
        additive = model.config._attn_implementation == "eager"
        return cls(additive, model.dtype, window)


def visibility(keys: Slots, q_pos: torch.Tensor, window: int | None) -> torch.Tensor:
    """(B, Q, K): key valid, at or before the query, and within ``window`` when given."""
    k_pos = keys.pos[:, None, :]
    seen = keys.valid[:, None, :] & (k_pos <= q_pos[:, :, None])
    if window is not None:
        seen &= (q_pos[:, :, None] - k_pos) < window
    return seen


def build_mask(
    spec: MaskSpec, keys: Slots, q_pos: torch.Tensor, tree: torch.Tensor | None = None
) -> Any:
    """The model's ``attention_mask`` for queries at the last ``Q`` key slots.

    ``tree`` (N, N) restricts the last N queries to their ancestors among the last N keys.
    Each query always sees its own slot, so padding rows never produce NaNs.
    """
    masks = {"full_attention": _one(keys, q_pos, None, tree)}
    if spec.sliding_window is not None:
        masks["sliding_attention"] = _one(keys, q_pos, spec.sliding_window, tree)
    out = {name: _format(m, spec) for name, m in masks.items()}
    return out if spec.sliding_window is not None else out["full_attention"]


def _one(keys: Slots, q_pos: torch.Tensor, window: int | None, tree: torch.Tensor | None) -> Any:
    seen = visibility(keys, q_pos, window)
    q, k = seen.shape[1], seen.shape[2]
    if tree is not None:
        n = tree.shape[0]
        seen[:, q - n :, k - n :] &= tree
    own = torch.arange(q, device=seen.device)
    seen[:, own, k - q + own] = True
    return seen


def _format(seen: torch.Tensor, spec: MaskSpec) -> torch.Tensor:
    if not spec.additive:
        return seen[:, None]
    zero = torch.zeros((), dtype=spec.dtype, device=seen.device)
    low = torch.tensor(torch.finfo(spec.dtype).min, dtype=spec.dtype, device=seen.device)
    return torch.where(seen, zero, low)[:, None]
