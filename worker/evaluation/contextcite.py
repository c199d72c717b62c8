"""ContextCite (Cohen-Wang et al., 2024), its released package, inside the harness.

Same model object, same prompt (the engine session's own token ids for every ablation,
in the engine's prompt style), same target: the package is handed the token ids the
engine scores for the model's full-context answer ``y`` (as generated, with the token
that ended it) as its response, so its per-ablation log-probabilities are the log p(y)
game every other method explains. (Handing it ``y`` as text, as before, let the package
re-tokenize prompt + text: on SmolLM2 its response became ``":Stephen Hawking"``, the
prompt's colon and a space-less name, and its values ranked ours at Spearman 0.63-0.81
over the same ablations; the prompt was also always the short style.)
Sources are whole documents. The package seeds ablation ``i`` with ``i``, so the first 32
of a 64-ablation run are exactly a 32-ablation run's: both are fitted from one pass over
64 ablations (the 32-ablation run is charged half the model time plus its own fit).

Needs the ``eval`` extra (``context-cite``); engines without a Hugging Face causal model
and tokenizer (seq2seq, the test fakes) report the method as unavailable.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from worker.shapley.segment import document_units
from worker.shapley.units import Document


@dataclass(frozen=True)
class CiteRun:
    """One ContextCite fit: scores per document, the ablations it used, its cost."""

    scores: list[float]
    masks: np.ndarray
    seconds: float
    forward_passes: int
    response: str
    """The response the package attributed: the decoded ids of the target answer, with the
    token that ended it."""


def available(engine: Any) -> str | None:
    """None when ContextCite can run on this engine, else why not."""
    if getattr(engine, "family", None) != "causal" or not hasattr(engine, "tokenizer"):
        return "needs a decoder-only Hugging Face model"
    try:
        _import_package()
    except ImportError:
        return "context-cite is not installed (pip install -e '.[eval]')"
    return None


def _import_package() -> Any:
    """The package, imported without its import-time ``nltk.download`` (a network call; the
    harness never splits text with nltk)."""
    import nltk

    original = nltk.download
    nltk.download = lambda *args, **kwargs: True
    try:
        import context_cite
        from context_cite.context_partitioner import BaseContextPartitioner
    finally:
        nltk.download = original
    return context_cite, BaseContextPartitioner


@dataclass(frozen=True)
class Target:
    """What the package is given: the engine's prompt ids per ablation and the ids of y."""

    prompt_ids: Callable[[np.ndarray], list[int]]
    response_ids: tuple[int, ...]


def engine_target(
    engine: Any, question: str, docs: list[Document], answer: str, options: dict[str, Any]
) -> Target:
    """The prompts and y's ids of an engine session opened with the harness's ``options``
    (masking, max_new_tokens); y is decoded once on the full context, so its ids are the
    generated ones where ``answer`` is the model's answer."""
    session = engine.open_session(question, docs, **options)
    units = document_units(docs)
    session.answers(units, np.ones((1, len(docs)), dtype=bool))
    return Target(
        lambda keep: list(session.prompt_ids(units, np.asarray(keep, dtype=bool))),
        session.target_ids(answer),
    )


def _partitioner(base_partitioner: type, docs: list[Document]) -> Any:
    """The package's sources: one per whole document (the prompt itself is the engine's)."""

    class Documents(base_partitioner):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__("\n".join(d.text for d in docs))

        @property
        def num_sources(self) -> int:
            return len(docs)

        def split_context(self) -> None:
            return None

        def get_source(self, index: int) -> str:
            return docs[index].text

        def get_context(self, mask: np.ndarray | None = None) -> str:
            return str(self.context)

    return Documents()


def _citer(engine: Any, question: str, docs: list[Document], target: Target, ablations: int) -> Any:
    context_cite, base_partitioner = _import_package()
    n = len(docs)

    class EnginePromptCiter(context_cite.ContextCiter):  # type: ignore[misc, name-defined]
        def _get_prompt_ids(self, mask: np.ndarray | None = None, return_prompt: bool = False):  # type: ignore[no-untyped-def]
            keep = np.ones(n, bool) if mask is None else np.asarray(mask, bool)
            ids = target.prompt_ids(keep)
            return (ids, engine.tokenizer.decode(ids)) if return_prompt else ids

        @property
        def _response_ids(self) -> list[int]:  # the engine's ids of y, never re-tokenized
            return list(target.response_ids)

    partitioner = _partitioner(base_partitioner, docs)
    citer = EnginePromptCiter(
        engine.model,
        engine.tokenizer,
        partitioner.context,
        question,
        num_ablations=ablations,
        partitioner=partitioner,
    )
    _, prompt = citer._get_prompt_ids(return_prompt=True)
    response = engine.tokenizer.decode(target.response_ids)
    citer._cache["output"] = prompt + response  # never generated
    return citer


def contextcite_runs(
    engine: Any,
    question: str,
    docs: Sequence[Document],
    answer: str,
    sizes: Sequence[int],
    **options: Any,
) -> dict[int, CiteRun]:
    """ContextCite with each number of ablations in ``sizes``, from one pass over the largest
    (see the module docstring for how the smaller runs are charged); y's decoding on the
    full context is not charged (every method is handed y)."""
    docs = list(docs)
    largest = max(sizes)
    target = engine_target(engine, question, docs, answer, options)
    start = time.perf_counter()
    full = _citer(engine, question, docs, target, largest)
    masks, logit_probs = full._masks, full._logit_probs  # runs the model over the ablations
    model_seconds = time.perf_counter() - start
    runs: dict[int, CiteRun] = {}
    for size in sorted(sizes):
        fit_start = time.perf_counter()
        citer = full if size == largest else _citer(engine, question, docs, target, size)
        citer._cache["reg_masks"], citer._cache["reg_logit_probs"] = (
            masks[:size],
            logit_probs[:size],
        )
        response = citer._response_ids
        # the package's fit over the whole response (what get_attributions() does without
        # a range, minus its character-offset look-ups, which need a fast tokenizer)
        weights, _bias = citer._get_attributions_for_ids_range(0, len(response))
        scores = [float(x) for x in weights]
        fit = time.perf_counter() - fit_start
        seconds = model_seconds * size / largest + fit
        text = engine.tokenizer.decode(response)
        runs[size] = CiteRun(scores, np.asarray(masks[:size], bool), seconds, size, text)
    return runs
