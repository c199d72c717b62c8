"""Explicit 4-D attention masks for a batch packed as a tree (``batching.packing.PackedTree``).

A query sees a key when the key is one of its own ancestors (or itself) or a full-context
slot its branch reuses, and, for sliding-window layers, when it lies within the window by
*position*. Visibility decided this way lets one cache row hold many coalitions, their
shared prefixes, their drafts and their decoding steps, while each query computes exactly
what it would in its coalition's prompt on its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from worker.engine.attention.key_blocks import KeyBlocks
from worker.engine.batching.packing import PackedTree


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


def build_mask(
    spec: MaskSpec,
    rows: list[PackedTree],
    queries: range,
    device: torch.device,
    blocks: KeyBlocks | None = None,
) -> Any:
    """The model's ``attention_mask`` for the ``queries`` nodes of every row (rows hold
    equally many nodes) over all slots up to the last query; each mask is also planned
    into ``blocks`` when given (SDPA's boolean masks only)."""
    masks = {"full_attention": np.stack([tree.seen(queries, None) for tree in rows])}
    if spec.sliding_window is not None:
        window = spec.sliding_window
        masks["sliding_attention"] = np.stack([tree.seen(queries, window) for tree in rows])
    out = {name: _format(seen, spec, device) for name, seen in masks.items()}
    if blocks is not None and not spec.additive:
        for name, seen in masks.items():
            blocks.add(out[name], seen)
    return out if spec.sliding_window is not None else out["full_attention"]


def _format(seen: np.ndarray, spec: MaskSpec, device: torch.device) -> torch.Tensor:
    mask = torch.from_numpy(seen)[:, None].to(device)
    if not spec.additive:
        return mask
    zero = torch.zeros((), dtype=spec.dtype, device=device)
    low = torch.tensor(torch.finfo(spec.dtype).min, dtype=spec.dtype, device=device)
    return torch.where(mask, zero, low)
