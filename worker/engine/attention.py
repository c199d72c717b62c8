"""The attention function the causal engine runs, registered with transformers by name.

transformers' SDPA path repeats every key and value head for grouped-query attention when
a mask is given (SmolLM2: 3 kv heads -> 9, over every cached slot, in every layer, on every
pass); on a CPU that copy costs about a sixth of a fast-mode job. PyTorch's SDPA computes
grouped-query attention itself (``enable_gqa``), so with the engine's explicit boolean
masks the copy is skipped. Calls without an explicit mask (plain ``generate`` on the same
model) and other devices (CUDA's fused kernels want no mask for ``enable_gqa``) go to
transformers' own SDPA function unchanged, so the model computes exactly what it did.
The linear layout (``linear_batch``) passes its row buffers as a keyword argument, which
transformers hands through to this function; then its kernel (FlashAttention 2 on CUDA)
does the work.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

NAME = "textgenshap_sdpa"


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
    or, given ``linear_rows`` (``linear_batch.LinearRows``), its kernel over those rows."""
    rows = kwargs.pop("linear_rows", None)
    if rows is not None:
        window, softcap = kwargs.get("sliding_window"), kwargs.get("softcap")
        return rows.attend(module, query, key, value, scaling, window, softcap), None
    plain = attention_mask is None or attention_mask.dtype != torch.bool
    if plain or query.device.type != "cpu" or kwargs.get("softcap") is not None:
        out, _ = sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
        return out, None
    out = F.scaled_dot_product_attention(
        query, key, value, attn_mask=attention_mask, scale=scaling, enable_gqa=True
    )
    return out.transpose(1, 2).contiguous(), None


def install(model: Any) -> str:
    """Switch ``model`` (loaded with SDPA) to the engine's attention; returns the name of the
    kernel family it runs on, for reporting."""
    AttentionInterface.register(NAME, engine_attention)
    AttentionMaskInterface.register(NAME, sdpa_mask)
    model.set_attn_implementation(NAME)
    return "sdpa"
