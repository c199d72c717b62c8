"""Attention-mass ranker: how much attention the position that emits the first answer token
pays to each document, averaged over heads and layers (a common, cheap baseline).

The computation needs the model, so it lives in the engine
(:mod:`worker.engine.causal.attention_mass`, ``CausalEngine.attention_mass``); this harness
module only asks the engine. Engines without it (seq2seq, fakes) report the ranker as
unavailable (None).
"""

from __future__ import annotations

from typing import Any

from worker.evaluation.data import Example


def attention_scores(engine: Any, example: Example) -> list[float] | None:
    """Attention mass per document, or None when this engine exposes no attentions."""
    offered = getattr(engine, "attention_mass", None)
    if not callable(offered):
        return None
    return [float(x) for x in offered(example.question, list(example.documents))]
