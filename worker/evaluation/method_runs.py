"""Every method's document scores for the model's own full-context answer ``y``, and what
each cost: given order, leave-one-out and attention; the service's pipeline (one job per
method and game, on a fresh session so its cost is its own); ContextCite.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any

from service.contract.results import ExplainResult, Feature
from service.contract.schemas import DocumentIn, ExplainRequest
from worker.evaluation import attention, contextcite, faithfulness, rankers
from worker.evaluation.config import EvalConfig
from worker.evaluation.data import Example
from worker.evaluation.methods import CONTEXTCITE, CONTEXTCITE_ENGINE, FIXED_BUDGET
from worker.evaluation.recording import RecordingOracle
from worker.explain import run_explanation
from worker.shapley import segment
from worker.shapley.game import normalize_answer
from worker.shapley.oracle import Oracle


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


def method_runs(
    engine: Any, example: Example, config: EvalConfig, answer: str, seed: int
) -> tuple[dict[str, MethodRun], dict[str, str]]:
    """The runs of every method of ``config`` that can run, by name, and why the others
    cannot."""
    runs, missing = cheap_runs(engine, example, config, answer)
    runs |= explained_runs(engine, example, config, answer, seed)
    cite_runs, cite_missing = _contextcite_runs(engine, example, config, answer)
    return runs | cite_runs, missing | cite_missing


def open_session(engine: Any, example: Example, config: EvalConfig) -> Oracle:
    """A fresh session on the question and its documents."""
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
        estimator=config.estimator,  # type: ignore[arg-type]
        budget=config.budget,
        masking=config.masking,  # type: ignore[arg-type]
        value=value,  # type: ignore[arg-type]
        max_new_tokens=config.max_new_tokens,
        seed=seed,
        checks=False,  # the harness checks every method itself, on one tie order
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
    """Every requested name of :data:`EXPLAINED` (one service job per method and game) and
    of :data:`FIXED_BUDGET`."""
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
    for name in FIXED_BUDGET:
        if name in config.methods:
            runs[name] = explained_run(engine, example, config, name, answer, seed)
    return runs


def explained_run(
    engine: Any, example: Example, config: EvalConfig, name: str, answer: str, seed: int
) -> MethodRun:
    """The service's pipeline (``shapley-answer`` = method shapley on the answer game, ...;
    ``banzhaf-logprob-32`` at budget 32) on a fresh session; its scores are those of the
    candidate ``y`` (zeros if the game never produced ``y``, which its record says), and
    ``logprob_scores`` the features' log p(y) game scores where the job computed them."""
    method, value, *budget = name.split("-")
    request = _request(example, config, method, value, seed)
    if budget:
        request = request.model_copy(update={"budget": int(budget[0])})
    session = RecordingOracle(open_session(engine, example, config))
    start = time.perf_counter()
    result = run_explanation(request, session, model=config.model)
    seconds = time.perf_counter() - start
    n = len(example.documents)
    per_candidate = candidate_scores(result, n)
    target = target_index(result, answer)
    return MethodRun(
        scores=per_candidate[target] if target is not None else [0.0] * n,
        seconds=seconds,
        coalitions=result.stats.coalitions,
        forward_passes=result.stats.forward_passes,
        tokens_computed=result.stats.tokens_computed,
        seen=session.seen,
        detail=_job_detail(result, n, target, per_candidate),
    )


def _job_detail(
    result: ExplainResult, n: int, target: int | None, per_candidate: list[list[float]]
) -> dict[str, Any]:
    """What the record keeps of one service job besides the scores of ``y``."""
    level = result.levels[0]
    stderr, logprob, logprob_stderr = _feature_columns(level.features, n, target)
    return {
        "answer": result.answer,
        "target": target,
        "candidates": [c.text for c in result.candidates],
        "candidate_scores": per_candidate,
        "stderr": stderr,
        "logprob_scores": logprob,
        "logprob_stderr": logprob_stderr,
        "estimator": level.estimator,
        "stopped_early": level.stopped_early,
        "passage_ranking": result.passage_ranking,
        "tied_passages": result.tied_passages,
    }


def _feature_columns(
    features: list[Feature], n: int, target: int | None
) -> tuple[list[float | None], list[float] | None, list[float | None] | None]:
    """Per document: the stderr of ``y``'s answer-game score (0 where ``y`` is no
    candidate), the log p(y) game's score and that score's own stderr (None when the job
    computed no log p game). Kept apart because the default ranking is the log p column:
    its coverage is checked against its own stderr, never the answer game's."""
    stderr: list[float | None] = [0.0] * n
    logprob: list[float] | None = [0.0] * n
    logprob_stderr: list[float | None] | None = [None] * n
    for f in features:
        if target is not None:
            stderr[f.document] = f.stderr[target]
        if f.logprob is None:
            logprob = logprob_stderr = None
        elif logprob is not None and logprob_stderr is not None:
            logprob[f.document] = f.logprob
            logprob_stderr[f.document] = f.logprob_stderr
    return stderr, logprob, logprob_stderr


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


def cheap_runs(
    engine: Any, example: Example, config: EvalConfig, answer: str
) -> tuple[dict[str, MethodRun], dict[str, str]]:
    """Given order, leave-one-out and attention; methods that cannot run say why."""
    n = len(example.documents)
    runs: dict[str, MethodRun] = {}
    missing: dict[str, str] = {}
    if "given" in config.methods:
        runs["given"] = MethodRun(rankers.given_order_scores(n))
    if "loo" in config.methods:
        session = RecordingOracle(open_session(engine, example, config))
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
    """ContextCite as released (the package runs the model) and over our engine (a fresh
    session's forward passes), each at the requested numbers of ablations."""
    runs: dict[str, MethodRun] = {}
    missing: dict[str, str] = {}
    for names, own_forward in ((CONTEXTCITE, True), (CONTEXTCITE_ENGINE, False)):
        wanted = {int(m.rsplit("-", 1)[1]): m for m in names if m in config.methods}
        if not wanted:
            continue
        reason = contextcite.available(engine, own_forward=own_forward)
        if reason is not None or not normalize_answer(answer):
            missing |= dict.fromkeys(wanted.values(), reason or "the full-context answer is empty")
            continue
        cites = _cites(engine, example, config, answer, list(wanted), own_forward)
        runs |= {
            wanted[size]: MethodRun(
                scores=run.scores,
                seconds=run.seconds,
                coalitions=run.coalitions,
                forward_passes=run.forward_passes,
                tokens_computed=run.tokens_computed,
                seen={faithfulness.mask_key(row) for row in run.masks},
            )
            for size, run in cites.items()
        }
    return runs, missing


def _cites(
    engine: Any,
    example: Example,
    config: EvalConfig,
    answer: str,
    sizes: list[int],
    own_forward: bool,
) -> dict[int, contextcite.CiteRun]:
    if own_forward:
        return contextcite.contextcite_runs(
            engine,
            example.question,
            example.documents,
            answer,
            sizes,
            masking=config.masking,
            max_new_tokens=config.max_new_tokens,
        )
    session = RecordingOracle(open_session(engine, example, config))
    units = segment.document_units(list(example.documents))
    return contextcite.engine_runs(session, units, answer, sizes)
