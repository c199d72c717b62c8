"""The plain Hugging Face computations the engine must reproduce, one coalition at a time."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers.modeling_outputs import BaseModelOutput

NEAR_TIE = 1e-4  # top-2 logit gap below which batching may legitimately flip greedy


def causal_generate(model, ids: Sequence[int], max_new: int, eos: set[int], pad: int):
    """Greedy ids from ``generate`` and the smallest top-2 logit gap along the way."""
    out = model.generate(
        torch.tensor([list(ids)]),
        attention_mask=torch.ones(1, len(ids), dtype=torch.long),
        do_sample=False, max_new_tokens=max_new, eos_token_id=sorted(eos), pad_token_id=pad,
        output_scores=True, return_dict_in_generate=True, top_k=None, top_p=None,
    )  # fmt: skip
    return _until_eos(out.sequences[0, len(ids) :].tolist(), eos), _gap(out.scores)


def seq2seq_generate(model, max_new: int, eos: int, **inputs):
    out = model.generate(
        **inputs, do_sample=False, max_new_tokens=max_new, eos_token_id=eos, pad_token_id=0,
        output_scores=True, return_dict_in_generate=True,
    )  # fmt: skip
    return _until_eos(out.sequences[0, 1:].tolist(), {eos}), _gap(out.scores)


def encoder_outputs(states: torch.Tensor) -> BaseModelOutput:
    return BaseModelOutput(last_hidden_state=states)


def causal_log_prob(model, prompt: Sequence[int], answer: Sequence[int]) -> float:
    """log p(answer | prompt) from one plain forward pass over prompt + answer."""
    ids = torch.tensor([[*prompt, *answer]])
    logp = model(ids).logits[0].float().log_softmax(-1)
    start = len(prompt) - 1
    return sum(logp[start + i, t].item() for i, t in enumerate(answer))


def _until_eos(tokens: list[int], eos: set[int]) -> list[int]:
    for i, t in enumerate(tokens):
        if t in eos:
            return tokens[: i + 1]
    return tokens


def _gap(scores: Sequence[torch.Tensor]) -> float:
    gaps = [float(s[0].topk(2).values.diff().abs()) for s in scores]
    return min(gaps) if gaps else float("inf")
