"""The public contract's result: what a succeeded job returns (``GET /jobs/{id}``'s
``result``) and ``textgenshap explain --json`` prints."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

LevelName = Literal["document", "sentence", "word"]


class Candidate(BaseModel):
    """A distinct (normalised) answer seen across coalitions."""

    text: str
    frequency: float = Field(description="Share of evaluated coalitions that gave this answer.")
    score: float = Field(description="Explanation mass: positive document-level score.")


class Feature(BaseModel):
    """One scored unit; ``score[i]`` and ``stderr[i]`` belong to ``candidates[i]``.

    ``stderr[i]`` is null where the estimator could not measure one (a single sample, or
    samples that showed no spread: an answer no sampled coalition produced, or pairs that
    all agree once the efficiency constraint is applied); the level's ``stderr_note`` says
    why.
    """

    document: int
    start: int
    end: int
    text: str
    score: list[float]
    stderr: list[float | None]
    logprob: float | None = Field(
        default=None,
        description="Score in the log-probability game of the full-context answer (null "
        "when that answer is empty).",
    )
    logprob_stderr: float | None = None


class LevelResult(BaseModel):
    """Scores of one hierarchy level. Shapley scores sum per answer to v(N) - v(empty);
    Banzhaf scores carry no such guarantee."""

    level: LevelName
    features: list[Feature]
    coalitions: int
    estimator: str
    stopped_early: bool = Field(
        default=False, description="Adaptive stopping ended the level before the budget."
    )
    stderr_note: str | None = Field(
        default=None, description="Why some standard errors are null (else absent)."
    )


class FastAgreement(BaseModel):
    """How far a fast-mode job's answers were from the exact engine's on this job's own
    inputs: its checks run on the exact engine (so the receipt is exact), and the fast
    mode's answers on the same coalitions are compared with them."""

    coalitions: int = Field(
        description="Coalitions answered both ways: the full context and the checks' ones."
    )
    answers_agree: float = Field(
        description="Share of them whose fast answer equals the exact one after QA normalisation."
    )
    logprob_mean_abs_diff: float | None = Field(
        description="Mean |fast - exact| log p(full-context answer) over them, in nats; "
        "null when that answer is empty."
    )


class Stats(BaseModel):
    """What the explanation cost, counted honestly (see docs/performance.md)."""

    model: str
    coalitions: int
    forward_passes: int
    tokens_computed: int
    speculative_acceptance_rate: float | None
    attention_backend: str
    seconds: dict[str, float]
    fast: bool = False  # the approximate fast mode answered (the request asked for it)
    fast_agreement: FastAgreement | None = Field(
        default=None,
        description="Fast-mode jobs with checks: fast mode's agreement with the exact "
        "engine on this job's checked coalitions (their cost is in the counts above).",
    )


class ContextCheck(BaseModel):
    """The model's answer with the ranking's top passages removed or alone (ContextCite's
    top-k removal and keep checks, on this job's ranking and the model's own answer): a
    faithful ranking names passages whose removal changes the answer, or at least lowers
    its log-probability, and which alone keep it."""

    kind: Literal["remove", "keep"]
    documents: list[int] = Field(description="The top passages removed, or the only ones kept.")
    answer: str = Field(description="The model's answer on that context.")
    answer_changed: bool = Field(
        description="That answer differs from the full-context one (after QA normalisation)."
    )
    logprob_drop: float | None = Field(
        description="log p(full-context answer | full context) minus its log p on this "
        "context, in nats; null when the full-context answer is empty."
    )


class ExplainResult(BaseModel):
    """What ``GET /jobs/{id}`` returns when succeeded and ``textgenshap explain --json`` prints."""

    answer: str
    candidates: list[Candidate]
    levels: list[LevelResult]
    passage_ranking: list[int] = Field(
        description="Documents best first for the full-context answer, by the request's "
        "rank_by game."
    )
    tied_passages: list[list[int]] = Field(
        default_factory=list,
        description="Groups of documents the ranking cannot tell apart (tied in both games).",
    )
    checks: list[ContextCheck] = Field(
        default_factory=list,
        description="Removal checks (k = 1, 2, 3 top passages removed), then keep checks "
        "(only them kept), for k below the number of documents; empty when the request "
        "turned checks off.",
    )
    stats: Stats


def check_where(check: ContextCheck, first: int = 0) -> str:
    """'without documents 1, 2' or 'only documents 1': what a check kept, with documents
    numbered from ``first`` (0 or 1) as the surrounding text numbers them. Every client
    words a check from this, the answer and its log p change."""
    docs = ", ".join(str(d + first) for d in check.documents)
    return ("without" if check.kind == "remove" else "only") + " documents " + docs


def check_lines(
    checks: list[ContextCheck], first: int = 0, stats: Stats | None = None
) -> list[str]:
    """The checks for people: one line each, what the model answered without (or with only)
    the ranking's top passages and how much log p(answer) moved; for a fast job, first the
    note that they ran exact (:func:`fast_note`)."""
    if not checks:
        return []
    lines = ["checks on the model (the top passages removed, or alone):"]
    note = fast_note(stats) if stats is not None else None
    if note:
        lines.append(f"  ({note})")
    for c in checks:
        verdict = "changed" if c.answer_changed else "same"
        moved = "" if c.logprob_drop is None else f", log p(answer) {-c.logprob_drop:+.2f}"
        lines.append(f"  {check_where(c, first)}: {c.answer!r} ({verdict}){moved}")
    return lines


def fast_note(stats: Stats) -> str | None:
    """A fast job's checks ran on the exact model: say so, and how often fast mode gave the
    same answer there (the viewer's ``heatmap.js`` words it the same way)."""
    agreed = stats.fast_agreement
    if agreed is None:
        return None
    same = round(agreed.answers_agree * agreed.coalitions)
    return (
        "fast mode (approximate) scored the passages; these checks ran on the exact model, "
        f"where fast mode gave the same answer on {same} of their {agreed.coalitions} contexts"
    )
