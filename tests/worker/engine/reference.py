"""The plain Hugging Face computations the engine must reproduce, one coalition at a time.

Answers stop as QA evaluation's ``stop=["\\n"]`` does, tolerating leading whitespace: a
``StoppingCriteria`` decodes the generated text after every step and stops once it holds
a newline after non-whitespace; the answer text is what precedes that newline.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import StoppingCriteria, StoppingCriteriaList
from transformers.modeling_outputs import BaseModelOutput

NEAR_TIE = 1e-4  # top-2 logit gap below which batching may legitimately flip greedy


class NewlineStop(StoppingCriteria):
    """Stop once the text generated after ``start`` has a newline after non-whitespace."""

    def __init__(self, tokenizer, start: int) -> None:
        self.tokenizer, self.start = tokenizer, start

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.BoolTensor:
        texts = self.tokenizer.batch_decode(input_ids[:, self.start :], skip_special_tokens=True)
        stop = [text.lstrip().find("\n") >= 0 for text in texts]
        return torch.tensor(stop, dtype=torch.bool, device=input_ids.device)


def closed_up_prompt(session, units, row) -> list[int]:
    """The full context's ids with a coalition's removed slots dropped (the kept documents'
    numbering untouched): the tokens fast mode's reused cache holds, question tail after."""
    tail = len(session.layout.tail)
    kept = session.layout.kept_slots(units, row)
    body = session.full[: len(session.full) - tail]
    return [t for t, k in zip(body, kept, strict=True) if k] + list(session.full[-tail:])


def causal_generate(
    model, tokenizer, ids: Sequence[int], max_new: int, eos: set[int], pad: int
) -> tuple[list[int], float]:
    """Greedy ids from ``generate`` (newline stop) and the smallest top-2 logit gap."""
    tokens, gaps = causal_generate_steps(model, tokenizer, ids, max_new, eos, pad)
    return tokens, min(gaps, default=float("inf"))


def causal_generate_steps(
    model, tokenizer, ids: Sequence[int], max_new: int, eos: set[int], pad: int
) -> tuple[list[int], list[float]]:
    """Greedy ids from ``generate`` (newline stop) and the top-2 logit gap at each step, on
    the model's own device (tests/cuda runs the same references on a GPU in bf16, where
    the gap at the step an answer diverged is the sharper near-tie test)."""
    out = model.generate(
        torch.tensor([list(ids)], device=model.device),
        attention_mask=torch.ones(1, len(ids), dtype=torch.long, device=model.device),
        do_sample=False, max_new_tokens=max_new, eos_token_id=sorted(eos), pad_token_id=pad,
        output_scores=True, return_dict_in_generate=True, top_k=None, top_p=None,
        stopping_criteria=StoppingCriteriaList([NewlineStop(tokenizer, len(ids))]),
    )  # fmt: skip
    return _until_eos(out.sequences[0, len(ids) :].tolist(), eos), _gaps(out.scores)


def seq2seq_generate(model, tokenizer, max_new: int, eos: int, **inputs):
    out = model.generate(
        **inputs, do_sample=False, max_new_tokens=max_new, eos_token_id=eos, pad_token_id=0,
        output_scores=True, return_dict_in_generate=True,
        stopping_criteria=StoppingCriteriaList([NewlineStop(tokenizer, 1)]),
    )  # fmt: skip
    return _until_eos(out.sequences[0, 1:].tolist(), {eos}), _gap(out.scores)


def answer_text(tokenizer, tokens: Sequence[int], eos: set[int]) -> str:
    """The reference answer text: generated text without EOS, cut at the stopping newline."""
    text = tokenizer.decode([t for t in tokens if t not in eos], skip_special_tokens=True)
    line = text.lstrip().partition("\n")[0]
    return line.strip().rstrip("\ufffd").strip()  # a character cut by the limit is dropped


def ended_by_newline(tokenizer, tokens: Sequence[int]) -> bool:
    """The reference answer was ended by the newline stop (not by EOS or the limit)."""
    return "\n" in tokenizer.decode(list(tokens), skip_special_tokens=True).lstrip()


def encoder_outputs(states: torch.Tensor) -> BaseModelOutput:
    return BaseModelOutput(last_hidden_state=states)


def causal_log_prob(model, prompt: Sequence[int], answer: Sequence[int]) -> float:
    """log p(answer | prompt) from one plain forward pass over prompt + answer."""
    ids = torch.tensor([[*prompt, *answer]], device=model.device)
    logp = model(ids).logits[0].float().log_softmax(-1)
    start = len(prompt) - 1
    return sum(logp[start + i, t].item() for i, t in enumerate(answer))


def _until_eos(tokens: list[int], eos: set[int]) -> list[int]:
    for i, t in enumerate(tokens):
        if t in eos:
            return tokens[: i + 1]
    return tokens


def _gaps(scores: Sequence[torch.Tensor]) -> list[float]:
    return [float(s[0].topk(2).values.diff().abs()) for s in scores]


def _gap(scores: Sequence[torch.Tensor]) -> float:
    return min(_gaps(scores), default=float("inf"))
