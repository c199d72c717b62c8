"""The explanation pipeline: one request, one engine session, one ExplainResult.

Stages, each reported through ``progress(stage, done, total)`` and timed in
``result.stats.seconds``: ``answer`` (the full-context answer), one stage per requested
level (``document``, ``sentence``, ``word``; done/total in coalitions), ``ranking`` and,
unless the request turns them off, ``checks`` (the ranking's top passages removed and
alone: ``worker.shapley.checks``). A fast-mode job runs its checks on an exact session
(``exact_session``), so its receipt is exact, and reports fast mode's agreement with it on
those coalitions (``stats.fast_agreement``).
Cancellation is cooperative: ``should_cancel()`` is checked before every batch the
games send to the model and between stages, and raises :class:`JobCancelled`.

All levels share one :class:`CoalitionCache`, so a model input is decoded at most once
per job; ``stats.coalitions`` counts those distinct inputs (decoded or scored).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np

from service.contract.results import (
    Candidate,
    ContextCheck,
    ExplainResult,
    FastAgreement,
    Feature,
    LevelResult,
    Stats,
)
from service.contract.schemas import ExplainRequest
from worker.shapley.checks import Agreement, agreement, check_plans, context_checks
from worker.shapley.coalitions import CoalitionCache
from worker.shapley.game import LOGPROB_KEY, normalize_answer
from worker.shapley.hierarchy import Hierarchy, LevelScores, Plan
from worker.shapley.notes import stderr_note
from worker.shapley.oracle import Oracle
from worker.shapley.ranking import RankedAnswer, align, passage_ranking, rank_candidates
from worker.shapley.segment import document_units
from worker.shapley.units import Document

ProgressHook = Callable[[str, int, int], None]


class JobCancelled(Exception):
    """The job's owner cancelled it; raised between batches, never mid-batch."""


class _Clock:
    """Seconds per stage, plus progress and cancellation at stage boundaries."""

    def __init__(self, progress: ProgressHook | None, checkpoint: Callable[[], None]) -> None:
        self.seconds: dict[str, float] = {}
        self.progress = progress
        self.checkpoint = checkpoint

    @contextmanager
    def stage(self, name: str, total: int | None = None) -> Iterator[None]:
        """Time a stage; report (name, 0, total) at its start when total is known."""
        self.checkpoint()
        if total is not None:
            self.report(name, 0, total)
        start = time.perf_counter()
        yield
        self.seconds[name] = time.perf_counter() - start

    def report(self, name: str, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress(name, done, total)


def run_explanation(
    request: ExplainRequest,
    session: Oracle,
    *,
    model: str,
    progress: ProgressHook | None = None,
    should_cancel: Callable[[], bool] | None = None,
    batch_size: int = 32,
    max_units: int = 1_000,
    exact_session: Callable[[], Oracle] | None = None,
) -> ExplainResult:
    """Explain the model's answer to ``request`` with hierarchical Shapley scores.

    ``exact_session`` opens the session a fast-mode job's checks run on (only if it has
    checks). Raises ``ShapleyInputError`` for bad input and :class:`JobCancelled` when
    ``should_cancel()`` turns true; model errors propagate unchanged.
    """
    started = time.perf_counter()
    docs = [Document(d.text, d.title) for d in request.document_objects()]
    clock = _Clock(progress, _checkpoint(should_cancel))
    cache = CoalitionCache(session)
    with clock.stage("answer", 1):
        answer = _full_answer(cache, docs)
        clock.report("answer", 1, 1)
    plan = _plan(request, answer, batch_size, max_units)
    levels = _levels(request, docs, cache, plan, clock)
    ranked, passages, ties = _ranking(request, cache, answer, levels[0], clock)
    checks, exact, agreed = _checks(request, cache, exact_session, docs, passages, answer, clock)
    clock.seconds["total"] = time.perf_counter() - started
    logprob_key = LOGPROB_KEY if request.value == "answer" else normalize_answer(answer)
    return ExplainResult(
        answer=answer.strip(),
        candidates=[_candidate(c) for c in ranked],
        levels=[_level_result(scores, ranked, logprob_key) for scores in levels],
        passage_ranking=passages,
        tied_passages=ties,
        checks=checks,
        stats=_stats(cache, exact, agreed, model, clock.seconds),
    )


def _checkpoint(should_cancel: Callable[[], bool] | None) -> Callable[[], None]:
    def check() -> None:
        if should_cancel is not None and should_cancel():
            raise JobCancelled("job cancelled")

    return check


def _full_answer(cache: CoalitionCache, docs: list[Document]) -> str:
    units = document_units(docs)
    return cache.answers(units, np.ones((1, len(units)), dtype=bool))[0]


def request_seed(request: ExplainRequest) -> int:
    """The request's ``seed``, else 32 bits of a hash of everything else it asks: the same
    request draws the same coalitions, two requests independent ones (a fixed default seed
    gave every question the same coalitions, hence identical score vectors)."""
    if request.seed is not None:
        return request.seed
    content = request.model_dump(mode="json", exclude={"seed"})
    digest = hashlib.sha256(json.dumps(content, sort_keys=True).encode()).digest()
    return int.from_bytes(digest[:4], "big")


def _plan(request: ExplainRequest, answer: str, batch_size: int, max_units: int) -> Plan:
    return Plan(
        method=request.method,
        estimator=request.estimator,
        budget=request.budget,
        seed=request_seed(request),
        target_stderr=request.target_stderr,
        rule=request.refine.rule,
        k=request.refine.k,
        threshold=request.refine.threshold,
        value=request.value,
        answer_text=answer.strip(),
        batch_size=batch_size,
        rank_by=request.rank_by,
        max_units=max_units,
        adaptive=request.adaptive,
    )


def _levels(
    request: ExplainRequest,
    docs: list[Document],
    cache: CoalitionCache,
    plan: Plan,
    clock: _Clock,
) -> list[LevelScores]:
    hierarchy = Hierarchy(docs, cache, plan, clock.report, clock.checkpoint)
    out: list[LevelScores] = []
    for index, level in enumerate(request.levels):
        with clock.stage(level):
            out.append(hierarchy.first() if index == 0 else hierarchy.next(out[-1], level, index))
    return out


def _ranking(
    request: ExplainRequest,
    cache: CoalitionCache,
    answer: str,
    documents: LevelScores,
    clock: _Clock,
) -> tuple[list[RankedAnswer], list[int], list[list[int]]]:
    """The ranked candidates, the passage ranking and its ties (the ``ranking`` stage)."""
    with clock.stage("ranking", 1):
        ranked = _rank(request, cache, answer, documents)
        passages, ties = _passages(request, answer, documents)
        clock.report("ranking", 1, 1)
    return ranked, passages, ties


def _rank(
    request: ExplainRequest, cache: CoalitionCache, answer: str, documents: LevelScores
) -> list[RankedAnswer]:
    """Candidates; in log-prob mode only the full-context answer is ever decoded."""
    key = normalize_answer(answer)
    if request.value == "logprob":
        return rank_candidates({key: 1}, {key: answer.strip()}, key, documents.estimate)
    return rank_candidates(cache.counts, cache.surface, key, documents.estimate)


def _passages(
    request: ExplainRequest, answer: str, documents: LevelScores
) -> tuple[list[int], list[list[int]]]:
    """Documents best first by their scores for the full-context answer, and the ties."""
    return passage_ranking(
        documents.estimate,
        [u.document for u in documents.units],
        normalize_answer(answer),
        request.rank_by,
    )


def _checks(
    request: ExplainRequest,
    cache: CoalitionCache,
    exact_session: Callable[[], Oracle] | None,
    docs: list[Document],
    passages: list[int],
    answer: str,
    clock: _Clock,
) -> tuple[list[ContextCheck], CoalitionCache | None, Agreement | None]:
    """The checks, on an exact session where one is given (a fast job), with the fast
    job's agreement with it; and that session's cache (its cost counts too)."""
    if not request.checks:
        return [], None, None
    units = document_units(docs)
    with clock.stage("checks", 1):  # after the stage's cancellation check, in its seconds
        exact = CoalitionCache(exact_session()) if exact_session is not None else None
        found = context_checks(exact if exact is not None else cache, units, passages, answer)
        agreed = None
        if exact is not None:
            agreed = agreement(cache, exact, units, check_plans(len(units), passages)[1], answer)
            cache.oracle.stats.absorb(exact.oracle.stats)
        clock.report("checks", 1, 1)
    return [ContextCheck(**vars(c)) for c in found], exact, agreed


def _candidate(c: RankedAnswer) -> Candidate:
    return Candidate(text=c.text, frequency=c.frequency, score=c.score)


def _level_result(scores: LevelScores, ranked: list[RankedAnswer], logprob_key: str) -> LevelResult:
    """``logprob_key``: the estimate's column of the log-probability game (absent when the
    full-context answer was empty)."""
    mean, stderr = align(scores.estimate, [c.key for c in ranked])
    has_logprob = logprob_key in scores.estimate.answers
    lp_mean, lp_stderr = align(scores.estimate, [logprob_key])
    features = [
        Feature(
            document=u.document,
            start=u.start,
            end=u.end,
            text=u.text,
            score=mean[i].tolist(),
            stderr=[_known(s) for s in stderr[i]],
            logprob=float(lp_mean[i, 0]) if has_logprob else None,
            logprob_stderr=_known(lp_stderr[i, 0]) if has_logprob else None,
        )
        for i, u in enumerate(scores.units)
    ]
    est = scores.estimate
    return LevelResult(
        level=scores.level,
        features=features,
        coalitions=est.coalitions,
        estimator=est.method,
        stopped_early=est.stopped_early,
        stderr_note=stderr_note(est) if np.isnan(stderr).any() else None,
    )


def _known(stderr: float) -> float | None:
    return None if np.isnan(stderr) else float(stderr)


def _stats(
    cache: CoalitionCache,
    exact: CoalitionCache | None,
    agreed: Agreement | None,
    model: str,
    seconds: dict[str, float],
) -> Stats:
    """The job's cost, the exact checks of a fast job included (its session's counts
    absorbed them)."""
    stats = cache.oracle.stats
    return Stats(
        model=model,
        coalitions=cache.evaluated + (exact.evaluated if exact is not None else 0),
        forward_passes=stats.forward_passes,
        tokens_computed=stats.tokens_computed,
        speculative_acceptance_rate=stats.acceptance_rate,
        attention_backend=stats.attention_backend,
        seconds=seconds,
        fast=stats.fast,
        fast_agreement=FastAgreement(**vars(agreed)) if agreed is not None else None,
    )
