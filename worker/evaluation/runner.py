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
from typing import Any

import numpy as np

from worker.evaluation import faithfulness, metrics
from worker.evaluation.config import SCHEMA, EvalConfig
from worker.evaluation.data import Example
from worker.evaluation.method_runs import MethodRun, method_runs, open_session
from worker.shapley import segment
from worker.shapley.game import normalize_answer
from worker.shapley.oracle import Oracle

SHARED_JOB = ("shapley", "banzhaf")
"""Methods read from the job of their ``-answer`` twin: its seconds are not their own."""


def check_coalitions(
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


def coalition_outcomes(
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
    base = open_session(engine, example, config)
    units = segment.document_units(list(example.documents))
    answer = base.answers(units, np.ones((1, n), dtype=bool))[0]
    runs, missing = method_runs(engine, example, config, answer, seed)
    priority = faithfulness.tie_order(n, seed)
    checks = check_coalitions(n, runs, priority, config.ks)
    gold_key = _gold_only_key(example)
    if gold_key is not None:
        checks[gold_key] = faithfulness.from_key(gold_key)
    seen = _sampled(runs, n)
    heldout = faithfulness.heldout_masks(n, config.heldout, seed, exclude=seen)
    for row in heldout:
        checks[faithfulness.mask_key(row)] = row
    outcomes = coalition_outcomes(base, example, answer, checks)
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
