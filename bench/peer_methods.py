"""Adapters that run each peer tool on the same model, prompt and documents as this project.

Every adapter takes a :class:`Job` (model, tokenizer, question, documents, the full-context
answer, and the engine's own prompt builder) and returns one score per document plus the
number of model forward calls it made (counted by a hook on the model, batch 1 = one pass
per coalition and generated token, which is how the engine counts its own passes).
Peers are imported here only; the service never imports this file.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

PromptIds = Callable[[np.ndarray], list[int]]


@dataclass
class Job:
    """One question as every method sees it. ``prompt_ids(keep)`` is the engine's prompt for
    the documents kept by the boolean vector ``keep`` (removal masking, renumbered)."""

    model: Any
    tokenizer: Any
    question: str
    blocks: list[str]
    answer: str
    prompt_ids: PromptIds
    budget: int
    max_new_tokens: int

    @property
    def n(self) -> int:
        return len(self.blocks)

    def answer_ids(self) -> list[int]:
        return list(self.tokenizer.encode(self.answer, add_special_tokens=False))


@contextmanager
def counted_passes(model: Any) -> Iterator[list[int]]:
    """Counts calls of ``model.forward`` while the block runs (``box[0]``). The method is
    wrapped, not hooked: Captum calls ``model.forward`` directly, bypassing module hooks."""
    box = [0]
    original = model.forward

    def counting(*args: Any, **kwargs: Any) -> Any:
        box[0] += 1
        return original(*args, **kwargs)

    model.forward = counting
    try:
        yield box
    finally:
        del model.forward  # back to the class's method


def plain_log_prob(job: Job, keep: np.ndarray, target: list[int]) -> float:
    """log p(target | prompt of ``keep``) with one plain teacher-forced forward pass: what a
    user without this engine would write (batch 1, no cache reuse)."""
    prompt = job.prompt_ids(keep)
    ids = torch.tensor([prompt + target], device=job.model.device)
    with torch.inference_mode():
        logits = job.model(ids, use_cache=False).logits[0, len(prompt) - 1 : -1].float()
    logp = torch.log_softmax(logits, dim=-1)
    return float(logp[torch.arange(len(target)), torch.tensor(target)].sum())


def _template(job: Job) -> Callable[..., str]:
    """Captum's template: kept blocks (non-empty values) renumbered, inside the engine's
    head and tail (decoded from its prompt ids, so chat templates match)."""
    empty = np.zeros(job.n, dtype=bool)
    head_tail = job.tokenizer.decode(job.prompt_ids(empty))
    cut = head_tail.rfind("\nQuestion:")  # the engine's tail starts there
    head, tail = head_tail[:cut], head_tail[cut:]

    def render(*values: str) -> str:
        kept = [v for v in values if v]
        blocks = "".join(f"Document [{k}]{v}" for k, v in enumerate(kept, 1))
        return head + blocks + tail

    return render


def _unnumbered(block: str) -> str:
    return block.split("]", 1)[1] if block.startswith("Document [") else block


def captum_scores(job: Job, method: str) -> list[float]:
    """Captum ``LLMAttribution`` over ``TextTemplateInput`` (one value per document),
    target = the full-context answer, sequence-level forward. ``method``:
    "feature_ablation" or "shapley_sampling" (permutations chosen so that coalitions ~=
    the budget)."""
    from captum.attr import (
        FeatureAblation,
        LLMAttribution,
        ShapleyValueSampling,
        TextTemplateInput,
    )

    values = [_unnumbered(b) for b in job.blocks]
    inp = TextTemplateInput(template=_template(job), values=values, baselines=[""] * job.n)
    # Captum's sequence-level forward: one pass per coalition with the target appended
    # (its documented fast mode; the default decodes token by token, ~len(target)x slower)
    kwargs: dict[str, Any] = {"forward_in_tokens": False}
    if method == "feature_ablation":
        algorithm: Any = FeatureAblation(job.model)
    else:
        algorithm = ShapleyValueSampling(job.model)
        kwargs["n_samples"] = max(1, job.budget // job.n)
    llm = LLMAttribution(algorithm, job.tokenizer)
    result = llm.attribute(inp, target=job.answer, **kwargs)
    return [float(x) for x in result.seq_attr.cpu().tolist()]


def contextcite_citer(job: Job, ablations: int = 64) -> Any:
    """ContextCite with documents as sources and its default 64 ablations (keep prob 0.5,
    LASSO surrogate), on the engine's prompts and the same target as the other peers: the
    full-context answer's ids (``job.answer_ids``), never generated or re-tokenized by the
    package (the harness's :func:`worker.evaluation.contextcite.package_citer`). (Before
    2026-12-05 the package generated its own response with ``model.generate``, which does
    not stop at the newline as the engine does, and re-tokenized prompt + response: it
    explained another target than the other methods.)"""
    from worker.evaluation.contextcite import Target, package_citer
    from worker.shapley.units import Document

    target = Target(job.prompt_ids, tuple(job.answer_ids()))
    docs = [Document(block) for block in job.blocks]
    return package_citer(job.model, job.tokenizer, job.question, docs, target, ablations)


def contextcite_scores(job: Job, ablations: int = 64) -> list[float]:
    """:func:`contextcite_citer`'s attributions over the whole answer."""
    citer = contextcite_citer(job, ablations)
    weights, _bias = citer._get_attributions_for_ids_range(0, len(job.answer_ids()))
    return [float(x) for x in weights]


def shap_scores(job: Job) -> list[float]:
    """shap's KernelExplainer over document on/off features (all-off background), value =
    log p(full-context answer) by plain teacher forcing; ``nsamples`` = the budget."""
    import shap

    target = job.answer_ids()

    def value(rows: np.ndarray) -> np.ndarray:
        return np.array([plain_log_prob(job, row.astype(bool), target) for row in rows])

    explainer = shap.KernelExplainer(value, np.zeros((1, job.n)), silent=True)
    phi = explainer.shap_values(np.ones((1, job.n)), nsamples=job.budget, silent=True)
    return [float(x) for x in np.asarray(phi).reshape(-1)[: job.n]]


def exact_shapley(values: np.ndarray, n: int) -> np.ndarray:
    """Exact Shapley values from ``values[s]`` = v(coalition with bit i of s set for kept i)."""
    sizes = np.array([bin(s).count("1") for s in range(1 << n)])
    weights = np.array(
        [math.factorial(k) * math.factorial(n - k - 1) / math.factorial(n) for k in range(n)]
    )
    phi = np.zeros(n)
    for i in range(n):
        without = np.array([s for s in range(1 << n) if not s >> i & 1])
        phi[i] = float(
            np.sum(weights[sizes[without]] * (values[without | 1 << i] - values[without]))
        )
    return phi


def all_masks(n: int) -> np.ndarray:
    """Every coalition, row s keeping unit i iff bit i of s is set."""
    return np.array(list(itertools.product([False, True], repeat=n)))[:, ::-1].copy()
