"""Attention mass per document, the evaluation's cheap baseline ranker, on a causal model.

How much attention the position that emits the first answer token pays to each
document's text, averaged over heads and layers. The full prompt is built with the
engine's own prompt pieces (its prompt style included, so the baseline sees the prompt the
explanations see) and run once with eager attention; forward hooks keep only the last
query row of each layer, so memory stays O(layers x T) instead of the
O(layers x heads x T^2) that ``output_attentions`` would return.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from worker.engine.prompt_layout import PromptLayout
from worker.engine.prompts import Codec, PromptStyle, document_block
from worker.shapley.units import Document


def prompt_layout(
    tokenizer: Any, question: str, docs: Sequence[Document], style: PromptStyle = "short"
) -> tuple[list[int], list[range]]:
    """Token ids of the full-context prompt exactly as the engine builds them and, per
    document, the token positions of its text (its header and title excluded)."""
    codec = Codec(tokenizer)
    layout = PromptLayout(codec, question, docs, "remove", tokenizer.pad_token_id or 0, style)
    cursor = len(layout.head)
    spans: list[range] = []
    for k, doc in enumerate(docs, 1):
        block, text_start = document_block(k, doc)
        encoded = codec.encode(block)
        first = next((t for t, (a, _) in enumerate(encoded.spans) if a >= text_start), None)
        first = len(encoded.ids) if first is None else first
        spans.append(range(cursor + first, cursor + len(encoded.ids)))
        cursor += len(encoded.ids)
    return list(layout.full()), spans


def attention_mass(
    model: Any,
    tokenizer: Any,
    question: str,
    docs: Sequence[Document],
    style: PromptStyle = "short",
) -> list[float]:
    """The last prompt position's attention share on each document's text."""
    ids, spans = prompt_layout(tokenizer, question, docs, style)
    rows: list[torch.Tensor] = []

    def keep_last_row(_module: Any, _args: Any, output: Any) -> None:
        weights = output[1] if isinstance(output, tuple) and len(output) > 1 else None
        if weights is not None:
            rows.append(weights[0, :, -1, :].float().mean(dim=0))

    layers = [m for name, m in model.named_modules() if name.endswith("self_attn")]
    previous = model.config._attn_implementation
    handles = [layer.register_forward_hook(keep_last_row) for layer in layers]
    try:
        model.set_attn_implementation("eager")  # SDPA never materialises the weights
        with torch.inference_mode():
            model(torch.tensor([ids], device=model.device), use_cache=False)
    finally:
        for handle in handles:
            handle.remove()
        model.set_attn_implementation(previous)
    if not rows:
        return [0.0] * len(docs)
    mass = torch.stack(rows).mean(dim=0)
    return [float(mass[list(span)].sum()) if len(span) else 0.0 for span in spans]
