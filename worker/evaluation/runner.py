"""Evaluate one question: full-context answer, the rankers, the explanation, their costs.

Each explained method gets its own session so its cost (forward passes, seconds) is its
own and not helped by another method's cache; the cheap rankers share one base session.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from service.schemas import DocumentIn, ExplainRequest, ExplainResult, LevelName
from worker.evaluation import attention, metrics, rankers
from worker.evaluation.data import Example
from worker.explain import run_explanation
from worker.shapley import segment
from worker.shapley.oracle import Oracle

EXPLAINED = ("shapley", "banzhaf")
METHODS = ("given", "loo", "attention", *EXPLAINED)


@dataclass(frozen=True)
class EvalConfig:
    """What a run holds fixed; stored next to the results so a resumed run matches."""

    model: str
    levels: tuple[LevelName, ...] = ("document",)
    budget: int = 64
    methods: tuple[str, ...] = METHODS
    masking: str = "remove"
    value: str = "answer"
    max_new_tokens: int = 16
    seed: int = 0
    ks: tuple[int, ...] = (1, 3, 5)
    extra: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class MethodRun:
    """One ranker's outcome on one question."""

    scores: list[float]
    seconds: float = 0.0
    coalitions: int = 0
    forward_passes: int = 0
    tokens_computed: int = 0
    result: ExplainResult | None = None

    def record(self, relevant: frozenset[int], ks: tuple[int, ...]) -> dict[str, Any]:
        ranking = metrics.rank_by_scores(self.scores)
        return {
            "ranking": ranking,
            "scores": [round(s, 6) for s in self.scores],
            "recall": {str(k): metrics.recall_at_k(ranking, relevant, k) for k in ks},
            "seconds": round(self.seconds, 4),
            "coalitions": self.coalitions,
            "forward_passes": self.forward_passes,
            "tokens_computed": self.tokens_computed,
        }


def _open(engine: Any, example: Example, config: EvalConfig) -> Oracle:
    session: Oracle = engine.open_session(
        example.question,
        list(example.documents),
        masking=config.masking,
        max_new_tokens=config.max_new_tokens,
    )
    return session


def _measured(session: Oracle, work: Callable[[], list[float]], coalitions: int) -> MethodRun:
    passes, tokens = session.stats.forward_passes, session.stats.tokens_computed
    start = time.perf_counter()
    scores = work()
    return MethodRun(
        scores=scores,
        seconds=time.perf_counter() - start,
        coalitions=coalitions,
        forward_passes=session.stats.forward_passes - passes,
        tokens_computed=session.stats.tokens_computed - tokens,
    )


def _request(example: Example, config: EvalConfig, method: str) -> ExplainRequest:
    docs = [DocumentIn(title=d.title, text=d.text) for d in example.documents]
    return ExplainRequest(
        question=example.question,
        documents=docs,  # type: ignore[arg-type]
        levels=list(config.levels),
        method=method,  # type: ignore[arg-type]
        budget=config.budget,
        masking=config.masking,  # type: ignore[arg-type]
        value=config.value,  # type: ignore[arg-type]
        max_new_tokens=config.max_new_tokens,
        seed=config.seed,
    )


def explained_run(engine: Any, example: Example, config: EvalConfig, method: str) -> MethodRun:
    """Run the pipeline with ``method`` on a fresh session; scores are its document-level
    scores for the answer it chose."""
    session = _open(engine, example, config)
    start = time.perf_counter()
    result = run_explanation(_request(example, config, method), session, model=config.model)
    seconds = time.perf_counter() - start
    n = len(example.documents)
    scores = rankers.document_scores(result, n)
    return MethodRun(
        scores=scores,
        seconds=seconds,
        coalitions=result.stats.coalitions,
        forward_passes=result.stats.forward_passes,
        tokens_computed=result.stats.tokens_computed,
        result=result,
    )


def _base_runs(engine: Any, example: Example, config: EvalConfig) -> tuple[str, dict[str, Any]]:
    """The full-context answer plus the rankers that need no explanation."""
    session = _open(engine, example, config)
    units = segment.document_units(list(example.documents))
    full = session.answers(units, np.ones((1, len(units)), dtype=bool))[0]
    runs: dict[str, Any] = {"given": MethodRun(rankers.given_order_scores(len(units)))}
    if "loo" in config.methods:
        work = lambda: rankers.leave_one_out_scores(session, units, full)  # noqa: E731
        runs["loo"] = _measured(session, work, len(units) + 1)
    if "attention" in config.methods:
        start = time.perf_counter()
        scores = attention.attention_scores(engine, example)
        if scores is not None:  # the engine exposes no attentions: the method is left out
            runs["attention"] = MethodRun(scores, time.perf_counter() - start, 1, 1)
    return full, runs


def offsets_ok(result: ExplainResult, example: Example) -> bool:
    """Every feature's text is exactly its document's text at its offsets (highlighting)."""
    for level in result.levels:
        for f in level.features:
            if example.documents[f.document].text[f.start : f.end] != f.text:
                return False
    return True


def evaluate(engine: Any, example: Example, config: EvalConfig) -> dict[str, Any]:
    """One JSON-ready record for ``example`` (see docs/results.md for the fields)."""
    full, runs = _base_runs(engine, example, config)
    for method in EXPLAINED:
        if method in config.methods:
            runs[method] = explained_run(engine, example, config, method)
    record = _example_fields(example)
    record.update(_answer_fields(full, example))
    record["methods"] = {m: r.record(example.relevant, config.ks) for m, r in runs.items()}
    main = runs.get("shapley") or runs.get("banzhaf")
    if main is not None and main.result is not None:
        record["explanation"] = _explanation_fields(main, example)
    return record


def _example_fields(example: Example) -> dict[str, Any]:
    return {
        "id": example.id,
        "lang": example.lang,
        "context_relevant": example.context_relevant,
        "n_documents": len(example.documents),
        "relevant": sorted(example.relevant),
        "gold_answers": list(example.answers),
    }


def _answer_fields(full: str, example: Example) -> dict[str, Any]:
    return {
        "full_answer": full,
        "full_correct": metrics.answer_correct(full, example.answers) if example.answers else None,
        "abstained": metrics.is_abstention(full),
    }


def _explanation_fields(run: MethodRun, example: Example) -> dict[str, Any]:
    result = run.result
    assert result is not None
    top = result.candidates[0].text if result.candidates else result.answer
    conc = metrics.concentration(run.scores)
    return {
        "answer": result.answer,
        "top_candidate": top,
        "top_correct": metrics.answer_correct(top, example.answers) if example.answers else None,
        "top_abstained": metrics.is_abstention(top),
        "candidates": [c.model_dump() for c in result.candidates[:5]],
        "concentration": None if conc is None else asdict(conc),
        "offsets_ok": offsets_ok(result, example),
        "estimators": [lv.estimator for lv in result.levels],
        "stage_seconds": result.stats.seconds,
    }
