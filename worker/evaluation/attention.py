"""Attention-mass ranker: how much attention the position that emits the first answer token
pays to each document, averaged over heads and layers (a common, cheap baseline).

The engine is asked first (``engine.attention_mass(question, documents)`` if it offers
one). Otherwise, for a causal engine whose model and tokenizer are reachable, the full
prompt is built with the engine's own prompt pieces and run once with eager attention;
forward hooks keep only the last query row of each layer, so memory stays O(layers x T)
instead of the O(layers x heads x T^2) that ``output_attentions`` would return. For other
engines (seq2seq, fakes) the ranker is reported as unavailable (None).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from worker.evaluation.data import Example
from worker.shapley.units import Document


def attention_scores(engine: Any, example: Example) -> list[float] | None:
    """Attention mass per document, or None when this engine exposes no attentions."""
    docs = list(example.documents)
    offered = getattr(engine, "attention_mass", None)
    if callable(offered):
        return [float(x) for x in offered(example.question, docs)]
    parts = _model_and_tokenizer(engine)
    if parts is None or getattr(engine, "family", "causal") != "causal":
        return None
    return _causal_attention_mass(parts[0], parts[1], example.question, docs)


def _model_and_tokenizer(engine: Any) -> tuple[Any, Any] | None:
    for holder in (getattr(engine, "loaded", None), engine):
        model = getattr(holder, "model", None)
        tokenizer = getattr(holder, "tokenizer", None)
        if model is not None and tokenizer is not None and hasattr(model, "config"):
            return model, tokenizer
    return None


def prompt_layout(
    tokenizer: Any, question: str, docs: Sequence[Document]
) -> tuple[list[int], list[range]]:
    """Token ids of the full-context prompt exactly as the engine builds them and, per
    document, the token positions of its text (its header and title excluded)."""
    from worker.engine.layout import PromptLayout
    from worker.engine.prompts import Codec, document_block

    codec = Codec(tokenizer)
    layout = PromptLayout(codec, question, docs, "remove", tokenizer.pad_token_id or 0)
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


def _causal_attention_mass(
    model: Any, tokenizer: Any, question: str, docs: list[Document]
) -> list[float]:
    import torch

    ids, spans = prompt_layout(tokenizer, question, docs)
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
