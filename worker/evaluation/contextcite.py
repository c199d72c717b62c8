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

``engine_runs`` is the same estimator with our engine computing the ablations: the
package's masks (its seeds, its keep probability), its sequence output (the logit of
p(y), from the engine's log p(y)) and its solver; only the forward passes are ours
(batched, prefix-cached). Its scores are the package's up to the engines' float error
(tested); its seconds are what ContextCite costs on this engine, not as released.

Needs the ``eval`` extra (``context-cite``); ``contextcite_runs`` needs a Hugging Face
causal model and tokenizer (seq2seq engines and the test fakes report it unavailable).
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
    tokens_computed: int = 0
    coalitions: int = 0
    """Coalitions charged: the ablations, plus y's full-context decoding where the run
    paid for it (``engine_runs``)."""


def available(engine: Any, *, own_forward: bool = True) -> str | None:
    """None when ContextCite can run on this engine, else why not (``own_forward``: the
    package runs the model itself, which needs a Hugging Face causal model)."""
    if own_forward and (
        getattr(engine, "family", None) != "causal" or not hasattr(engine, "tokenizer")
    ):
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


def package_citer(
    model: Any, tokenizer: Any, question: str, docs: list[Document], target: Target, ablations: int
) -> Any:
    """The package's ``ContextCiter`` over ``target``: its prompt for each ablation is
    ``target.prompt_ids``, its response ``target.response_ids`` (never generated or
    re-tokenized), its sources the whole documents. Also used by ``bench/peer_methods.py``."""
    context_cite, base_partitioner = _import_package()
    n = len(docs)

    class EnginePromptCiter(context_cite.ContextCiter):  # type: ignore[misc, name-defined]
        def _get_prompt_ids(self, mask: np.ndarray | None = None, return_prompt: bool = False):  # type: ignore[no-untyped-def]
            keep = np.ones(n, bool) if mask is None else np.asarray(mask, bool)
            ids = target.prompt_ids(keep)
            return (ids, tokenizer.decode(ids)) if return_prompt else ids

        @property
        def _response_ids(self) -> list[int]:  # the engine's ids of y, never re-tokenized
            return list(target.response_ids)

    partitioner = _partitioner(base_partitioner, docs)
    citer = EnginePromptCiter(
        model,
        tokenizer,
        partitioner.context,
        question,
        num_ablations=ablations,
        partitioner=partitioner,
    )
    _, prompt = citer._get_prompt_ids(return_prompt=True)
    response = tokenizer.decode(target.response_ids)
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
    inputs = (engine.model, engine.tokenizer, question, docs, target)
    full = package_citer(*inputs, largest)
    masks, logit_probs = full._masks, full._logit_probs  # runs the model over the ablations
    model_seconds = time.perf_counter() - start
    runs: dict[int, CiteRun] = {}
    for size in sorted(sizes):
        fit_start = time.perf_counter()
        citer = full if size == largest else package_citer(*inputs, size)
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
        masks_used = np.asarray(masks[:size], bool)
        runs[size] = CiteRun(scores, masks_used, seconds, size, text, coalitions=size)
    return runs


KEEP_PROBABILITY = 0.5
"""The package's default ``ablation_keep_prob``."""


def package_masks(n: int, count: int) -> np.ndarray:
    """The package's ablations ``0 .. count - 1`` (its seeds), by its own function."""
    _import_package()
    from context_cite.utils import _create_mask

    return np.stack([_create_mask(n, KEEP_PROBABILITY, seed) for seed in range(count)])


def logit_of_probability(log_p: np.ndarray) -> np.ndarray:
    """The package's sequence output (``aggregate_logit_probs``, "logit_prob"): log p -
    log(1 - p), in float32 as it computes it. A p that rounds to 1 (where the package's
    output is infinite and its solver fails) is held just below 1."""
    lp = np.minimum(np.asarray(log_p, dtype=np.float32), np.float32(-1e-7))
    return np.asarray(lp - np.log1p(-np.exp(lp)), dtype=np.float64)


def fit_scores(masks: np.ndarray, log_p: np.ndarray, response_tokens: int) -> list[float]:
    """The package's surrogate weights from each ablation's log p(y) (its output, the logit
    of p(y), through its solver)."""
    return solver_weights(masks, logit_of_probability(log_p), response_tokens)


def solver_weights(masks: np.ndarray, outputs: np.ndarray, response_tokens: int) -> list[float]:
    """The package's default solver (a Lasso, alpha 0.01, on standardised masks and the
    output per response token), weights back in the output's units."""
    _import_package()
    from context_cite.solver import LassoRegression

    weights, _bias = LassoRegression().fit(np.asarray(masks, bool), outputs, response_tokens)
    return [float(w) for w in weights]


def _response_tokens(session: Any, answer: str) -> int:
    """y's scored tokens (the package divides its output by them before the Lasso);
    sessions without token ids (the test fakes) count words."""
    inner = getattr(session, "inner", session)
    ids = getattr(inner, "target_ids", None)
    return len(ids(answer)) if ids is not None else max(1, len(answer.split()))


def engine_runs(
    session: Any, units: Sequence[Any], answer: str, sizes: Sequence[int]
) -> dict[int, CiteRun]:
    """ContextCite at each number of ablations in ``sizes``, its ablations scored by the
    engine ``session`` (y decoded on the full context first, as every engine method
    does). The smaller runs are the larger's first ablations, charged the seconds,
    passes and tokens spent up to their last ablation plus their own fit."""
    n, largest = len(units), max(sizes)
    stats = session.stats
    passes, tokens, start = stats.forward_passes, stats.tokens_computed, time.perf_counter()
    session.answers(units, np.ones((1, n), dtype=bool))
    masks, done, log_p = package_masks(n, largest), 0, np.zeros(largest)
    response_tokens = _response_tokens(session, answer)
    spent: dict[int, tuple[float, int, int]] = {}
    for size in sorted(set(sizes)):
        log_p[done:size] = session.log_probs(units, masks[done:size], answer)
        done = size
        spent[size] = (
            time.perf_counter() - start,
            stats.forward_passes - passes,
            stats.tokens_computed - tokens,
        )
    runs: dict[int, CiteRun] = {}
    for size, (seconds, used_passes, used_tokens) in spent.items():
        fit_start = time.perf_counter()
        scores = fit_scores(masks[:size], log_p[:size], response_tokens)
        seconds += time.perf_counter() - fit_start
        runs[size] = CiteRun(
            scores, masks[:size].copy(), seconds, used_passes, answer, used_tokens, size + 1
        )
    return runs
