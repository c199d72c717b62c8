"""Evaluate one question: every method's document scores for the model's own full-context
answer ``y``, then the coalitions that judge them, in one batched pass of the engine.

Per question: the full-context answer ``y``; each method on a fresh session (its cost is its
own, not helped by another method's cache), scoring ``y``; then on the base session the
removal and keep coalitions of every method's top 1-3 documents, the gold-only coalition
and held-out random coalitions that no estimator saw, each decoded greedily and scored
with ``log p(y)``. The record holds the raw outcomes, so every metric of
:mod:`worker.evaluation.report` is recomputed from records alone.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from service.contract.schemas import DocumentIn, ExplainRequest, ExplainResult
from worker.evaluation import attention, contextcite, faithfulness, metrics, rankers
from worker.evaluation.data import Example
from worker.evaluation.methods import CONTEXTCITE, METHODS
from worker.evaluation.recording import RecordingOracle
from worker.explain import run_explanation
from worker.shapley import segment
from worker.shapley.game import normalize_answer
from worker.shapley.oracle import Oracle

SHARED_JOB = ("shapley", "banzhaf")
"""Methods read from the job of their ``-answer`` twin: its seconds are not their own."""
SCHEMA = 2
"""Record layout version: 2 = one target (y) for every method, raw check outcomes."""


@dataclass(frozen=True)
class EvalConfig:
    """What a run holds fixed; stored next to the results so a resumed run matches.

    ``seed`` is the run's base seed: each question's seed derives from it and the
    question's id. ``ks``: the top-k of the removal and keep checks; ``recall_ks``: the
    recall@k reported; ``heldout``: random coalitions per question for the LDS.
    """

    model: str
    budget: int = 32
    methods: tuple[str, ...] = METHODS
    masking: str = "remove"
    max_new_tokens: int = 16
    seed: int = 0
    heldout: int = 32
    ks: tuple[int, ...] = (1, 2, 3)
    recall_ks: tuple[int, ...] = (1, 3, 5)
    extra: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"schema": SCHEMA, **asdict(self)}


@dataclass
class MethodRun:
    """One method's scores for ``y`` and what they cost."""

    scores: list[float]
    seconds: float = 0.0
    coalitions: int = 0
    forward_passes: int = 0
    tokens_computed: int = 0
    seen: set[str] = field(default_factory=set)
    detail: dict[str, Any] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        return {
            "scores": [float(s) for s in self.scores],  # full precision: ties recompute
            "seconds": round(self.seconds, 4),
            "coalitions": self.coalitions,
            "forward_passes": self.forward_passes,
            "tokens_computed": self.tokens_computed,
            **self.detail,
        }


def _open(engine: Any, example: Example, config: EvalConfig) -> Oracle:
    session: Oracle = engine.open_session(
        example.question,
        list(example.documents),
        masking=config.masking,
        max_new_tokens=config.max_new_tokens,
    )
    return session


def _request(example: Example, config: EvalConfig, method: str, value: str, seed: int) -> Any:
    docs = [DocumentIn(title=d.title, text=d.text) for d in example.documents]
    return ExplainRequest(
        question=example.question,
        documents=docs,  # type: ignore[arg-type]
        levels=["document"],
        method=method,  # type: ignore[arg-type]
        budget=config.budget,
        masking=config.masking,  # type: ignore[arg-type]
        value=value,  # type: ignore[arg-type]
        max_new_tokens=config.max_new_tokens,
        seed=seed,
    )


def candidate_scores(result: ExplainResult, n: int) -> list[list[float]]:
    """Document scores per candidate (rows in the result's candidate order)."""
    return [rankers.document_scores(result, n, c) for c in range(len(result.candidates))]


def target_index(result: ExplainResult, answer: str) -> int | None:
    """Index of the candidate that is ``answer`` (same normalised key), None if absent."""
    key = normalize_answer(answer)
    keys = [normalize_answer(c.text) for c in result.candidates]
    return keys.index(key) if key in keys else None


def explained_runs(
    engine: Any, example: Example, config: EvalConfig, answer: str, seed: int
) -> dict[str, MethodRun]:
    """Every requested name of :data:`EXPLAINED`, one service job per (method, game)."""
    runs: dict[str, MethodRun] = {}
    for method in ("shapley", "banzhaf"):
        joint = {method, f"{method}-answer"} & set(config.methods)
        if joint:
            run = explained_run(engine, example, config, f"{method}-answer", answer, seed)
            if f"{method}-answer" in joint:
                runs[f"{method}-answer"] = run
            if method in joint and run.detail["logprob_scores"] is not None:
                runs[method] = replace(run, scores=run.detail["logprob_scores"])
        if f"{method}-logprob" in config.methods:
            name = f"{method}-logprob"
            runs[name] = explained_run(engine, example, config, name, answer, seed)
    return runs


def explained_run(
    engine: Any, example: Example, config: EvalConfig, name: str, answer: str, seed: int
) -> MethodRun:
    """The service's pipeline (``shapley-answer`` = method shapley on the answer game, ...)
    on a fresh session; its scores are those of the candidate ``y`` (zeros if the game
    never produced ``y``, which its record says), and ``logprob_scores`` the features'
    log p(y) game scores where the job computed them."""
    method, value = name.split("-")
    session = RecordingOracle(_open(engine, example, config))
    start = time.perf_counter()
    result = run_explanation(
        _request(example, config, method, value, seed), session, model=config.model
    )
    seconds = time.perf_counter() - start
    n = len(example.documents)
    per_candidate = candidate_scores(result, n)
    target = target_index(result, answer)
    level = result.levels[0]
    stderr: list[float | None] = [0.0] * n
    logprob: list[float] | None = [0.0] * n
    for f in level.features:
        if target is not None:
            stderr[f.document] = f.stderr[target]
        if f.logprob is None:
            logprob = None
        elif logprob is not None:
            logprob[f.document] = f.logprob
    return MethodRun(
        scores=per_candidate[target] if target is not None else [0.0] * n,
        seconds=seconds,
        coalitions=result.stats.coalitions,
        forward_passes=result.stats.forward_passes,
        tokens_computed=result.stats.tokens_computed,
        seen=session.seen,
        detail={
            "answer": result.answer,
            "target": target,
            "candidates": [c.text for c in result.candidates],
            "candidate_scores": per_candidate,
            "stderr": stderr,
            "logprob_scores": logprob,
            "estimator": level.estimator,
            "stopped_early": level.stopped_early,
            "passage_ranking": result.passage_ranking,
            "tied_passages": result.tied_passages,
        },
    )


def _measured(session: RecordingOracle, scores: Any, coalitions: int) -> MethodRun:
    passes, tokens = session.stats.forward_passes, session.stats.tokens_computed
    start = time.perf_counter()
    values = scores()
    return MethodRun(
        scores=values,
        seconds=time.perf_counter() - start,
        coalitions=coalitions,
        forward_passes=session.stats.forward_passes - passes,
        tokens_computed=session.stats.tokens_computed - tokens,
        seen=set(session.seen),
    )


def _cheap_runs(
    engine: Any, example: Example, config: EvalConfig, answer: str
) -> tuple[dict[str, MethodRun], dict[str, str]]:
    """Given order, leave-one-out and attention; methods that cannot run say why."""
    n = len(example.documents)
    runs: dict[str, MethodRun] = {}
    missing: dict[str, str] = {}
    if "given" in config.methods:
        runs["given"] = MethodRun(rankers.given_order_scores(n))
    if "loo" in config.methods:
        session = RecordingOracle(_open(engine, example, config))
        units = segment.document_units(list(example.documents))
        work = lambda: rankers.leave_one_out_scores(session, units, answer)  # noqa: E731
        runs["loo"] = _measured(session, work, n + 1)
    if "attention" in config.methods:
        start = time.perf_counter()
        scores = attention.attention_scores(engine, example)
        if scores is None:
            missing["attention"] = "the engine exposes no attention weights"
        else:
            runs["attention"] = MethodRun(scores, time.perf_counter() - start, 1, 1)
    return runs, missing


def _contextcite_runs(
    engine: Any, example: Example, config: EvalConfig, answer: str
) -> tuple[dict[str, MethodRun], dict[str, str]]:
    wanted = {int(m.split("-")[1]): m for m in CONTEXTCITE if m in config.methods}
    if not wanted:
        return {}, {}
    reason = contextcite.available(engine)
    if reason is not None or not normalize_answer(answer):
        why = reason or "the full-context answer is empty"
        return {}, dict.fromkeys(wanted.values(), why)
    cites = contextcite.contextcite_runs(
        engine, example.question, example.documents, answer, list(wanted)
    )
    runs = {
        wanted[size]: MethodRun(
            scores=run.scores,
            seconds=run.seconds,
            coalitions=size,
            forward_passes=run.forward_passes,
            seen={faithfulness.mask_key(row) for row in run.masks},
        )
        for size, run in cites.items()
    }
    return runs, {}


def _check_coalitions(
    n: int, runs: dict[str, MethodRun], priority: list[int], ks: tuple[int, ...]
) -> dict[str, np.ndarray]:
    """The removal and keep coalitions of every method's top documents, by key."""
    wanted: dict[str, np.ndarray] = {"1" * n: np.ones(n, dtype=bool)}
    for run in runs.values():
        top = faithfulness.top_documents(run.scores, priority)
        for k in ks:
            if k < n:
                for mask in (
                    faithfulness.removal_mask(n, top, k),
                    faithfulness.keep_mask(n, top, k),
                ):
                    wanted[faithfulness.mask_key(mask)] = mask
    return wanted


def _outcomes(
    session: Oracle, example: Example, answer: str, masks: dict[str, np.ndarray]
) -> dict[str, dict[str, Any]]:
    """Greedy answer and log p(y) of every coalition, in one batch each."""
    keys = list(masks)
    units = segment.document_units(list(example.documents))
    matrix = np.stack([masks[k] for k in keys])
    answers = session.answers(units, matrix)
    logps: list[float | None] = [None] * len(keys)
    if normalize_answer(answer):
        logps = [float(v) for v in session.log_probs(units, matrix, answer)]
    return {k: {"answer": a, "logp": lp} for k, a, lp in zip(keys, answers, logps, strict=True)}


def evaluate(engine: Any, example: Example, config: EvalConfig) -> dict[str, Any]:
    """One JSON-ready record for ``example`` (fields: docs/results.md)."""
    started = time.perf_counter()
    n = len(example.documents)
    seed = faithfulness.question_seed(example.id, config.seed)
    base = _open(engine, example, config)
    units = segment.document_units(list(example.documents))
    answer = base.answers(units, np.ones((1, n), dtype=bool))[0]
    runs, missing = _cheap_runs(engine, example, config, answer)
    runs |= explained_runs(engine, example, config, answer, seed)
    cite_runs, cite_missing = _contextcite_runs(engine, example, config, answer)
    runs |= cite_runs
    missing |= cite_missing
    priority = faithfulness.tie_order(n, seed)
    checks = _check_coalitions(n, runs, priority, config.ks)
    gold_key = _gold_only_key(example)
    if gold_key is not None:
        checks[gold_key] = faithfulness.from_key(gold_key)
    seen = _sampled(runs, n)
    heldout = faithfulness.heldout_masks(n, config.heldout, seed, exclude=seen)
    for row in heldout:
        checks[faithfulness.mask_key(row)] = row
    outcomes = _outcomes(base, example, answer, checks)
    methods_seconds = sum(r.seconds for name, r in runs.items() if name not in SHARED_JOB)
    record = _example_fields(example, seed)
    record |= _answer_fields(answer, example, outcomes, gold_key)
    record["tie_priority"] = priority
    record["heldout"] = [faithfulness.mask_key(row) for row in heldout]
    record["coalitions"] = outcomes
    record["methods"] = {m: r.record() for m, r in runs.items()}
    record["unavailable"] = missing
    record["harness_seconds"] = round(time.perf_counter() - started - methods_seconds, 4)
    record["harness_seconds_once"] = True  # each service job subtracted once
    return record


def _sampled(runs: dict[str, MethodRun], n: int) -> set[str]:
    """Coalitions some estimator used; an exhaustive (exact) method saw every coalition by
    definition, so it cannot have a held-out set and does not take one from the others."""
    return {key for r in runs.values() if len(r.seen) < 2**n for key in r.seen}


def _gold_only_key(example: Example) -> str | None:
    if not example.relevant:
        return None
    return "".join("1" if i in example.relevant else "0" for i in range(len(example.documents)))


def _example_fields(example: Example, seed: int) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "id": example.id,
        "seed": seed,
        "lang": example.lang,
        "context_relevant": example.context_relevant,
        "n_documents": len(example.documents),
        "relevant": sorted(example.relevant),
        "gold_answers": list(example.answers),
    }


def _answer_fields(
    answer: str, example: Example, outcomes: dict[str, dict[str, Any]], gold_key: str | None
) -> dict[str, Any]:
    gold_only = outcomes[gold_key]["answer"] if gold_key is not None else None
    has_gold = bool(example.answers)
    return {
        "full_answer": answer,
        "full_correct": metrics.answer_correct(answer, example.answers) if has_gold else None,
        "abstained": metrics.is_abstention(answer),
        "gold_only_answer": gold_only,
        "gold_only_correct": (
            metrics.answer_correct(gold_only, example.answers)
            if has_gold and gold_only is not None
            else None
        ),
    }
