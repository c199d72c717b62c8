"""The public contract: request and job models shared by gateway, worker, client and CLI
(the result's models: ``service.contract.results``).

Field limits live here so that bad input becomes a 422 naming the field by construction;
limits that depend on the deployment (budget cap, document counts) are checked against
``Settings`` in the route, with the same error shape.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from service.contract.results import ExplainResult, LevelName

LEVEL_ORDER: tuple[LevelName, ...] = ("document", "sentence", "word")


class DocumentIn(BaseModel):
    """One context passage; ``title`` is optional and belongs to the passage."""

    model_config = ConfigDict(extra="forbid")

    title: str = Field(default="", max_length=1_000)
    text: str = Field(min_length=1)

    @field_validator("text")
    @classmethod
    def _text_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("document text must not be blank")
        return value


class RefineSpec(BaseModel):
    """Which features of a level are split at the next level.

    A feature's score is the one the passage ranking reads first for the full-context
    answer (``rank_by``: its log-probability game by default), so the next level explains
    the passages the ranking names; for an empty answer, the largest over the candidates.
    ``top_k``: the k features with the largest positive score.
    ``threshold``: features whose lower confidence bound (mean - stderr; the mean where
    the stderr is unknown) exceeds ``threshold``.
    """

    model_config = ConfigDict(extra="forbid")

    rule: Literal["top_k", "threshold"] = "top_k"
    k: int = Field(default=2, ge=1, le=100)
    threshold: float = Field(default=0.05, ge=-1.0, le=1.0)


class ExplainRequest(BaseModel):
    """Body of ``POST /explain``."""

    model_config = ConfigDict(extra="forbid")

    question: str = Field(min_length=1, max_length=4_000)
    documents: list[DocumentIn | Annotated[str, Field(min_length=1)]] = Field(min_length=1)
    model: str | None = Field(default=None, min_length=1, max_length=200)
    levels: list[LevelName] = Field(default_factory=lambda: list(LEVEL_ORDER[:2]))
    method: Literal["shapley", "banzhaf"] = Field(
        default="shapley",
        description="'shapley', or 'banzhaf': every feature's mean effect over uniformly "
        "random coalitions, the coefficients of the best additive fit to them (what "
        "ContextCite's surrogate and the LDS metric measure); exact when all 2^n coalitions "
        "fit the budget, else a least-squares fit on complement pairs from balanced "
        "(Hadamard) blocks of uniform coalitions from 2n + 8 coalitions, and a Lasso fit "
        "on such coalitions below that (scores shrunk toward 0, no stderr). Banzhaf scores "
        "do not sum to the total effect.",
    )
    estimator: Literal["auto", "exact", "permutation", "owen", "kernel", "layered"] = Field(
        default="auto",
        description="Shapley estimator; 'auto' enumerates exactly when it fits the budget, "
        "else runs 'layered' when the budget holds n + 2, else 'kernel'. 'layered': "
        "KernelSHAP that first evaluates every feature alone and left out (2n + 2 "
        "coalitions), then every coalition of sizes 2 and n-2, 3 and n-3, ... while such a "
        "layer fits the budget whole, and samples the rest (adaptive stopping acts on the "
        "sampled rest); where the budget leaves room, two coalitions per size it did not "
        "enumerate go to the ranking's open boundaries (ranks 2 and 3, then 3 and 4), whose "
        "score difference comes from paired draws; below 2n + 2 it evaluates every feature "
        "left out and as many alone as fit, those the ranking's game puts first first "
        "(reported as 'layered-partial', without stderr). Ignored for banzhaf.",
    )
    value: Literal["answer", "logprob"] = Field(
        default="answer",
        description="'answer': categorical game on the greedy answer string, with the "
        "log-probability of the full-context answer scored on the same coalitions; "
        "'logprob': the log-probability game alone.",
    )
    rank_by: Literal["logprob", "answer"] = Field(
        default="logprob",
        description="Game the passage ranking follows, for the full-context answer: its "
        "log-probability (ties broken by the answer game) or the answer game (ties broken "
        "by the log-probability).",
    )
    budget: int = Field(
        default=128, ge=2, description="Coalitions per level (at least the full and empty ones)."
    )
    target_stderr: float | None = Field(default=None, gt=0, le=1)
    adaptive: bool = Field(
        default=True,
        description="Document level: stop sampling once the top document's lower confidence "
        "bound (score - t stderr, Student's t 97.5% for the samples drawn, in the rank_by "
        "game) clears every other document's upper bound, never before 8 samples (Owen "
        "groups or KernelSHAP pairs); the level's coalitions say how many were used.",
    )
    refine: RefineSpec = Field(default_factory=RefineSpec)
    masking: Literal["remove", "pad"] = "remove"
    max_new_tokens: int = Field(default=16, ge=1, le=128)
    seed: int | None = Field(
        default=None,
        ge=0,
        le=2**32 - 1,
        description="Seed of the sampled coalitions. Default: derived from the request's "
        "content, so the same request samples the same coalitions and different requests "
        "independent ones.",
    )
    fast: bool = Field(
        default=False,
        description="Decoder-only models: approximate answers from the full-context cache "
        "with the removed units left out and the kept ones moved to their positions in the "
        "coalition's prompt (several times faster; its answers agree with the exact ones on "
        "about 0.6-0.8 of NQ coalitions, docs/performance.md). The checks still run on "
        "the exact engine; stats.fast says which mode ran and stats.fast_agreement how "
        "often fast mode gave the exact answer on the checked coalitions.",
    )
    checks: bool = Field(
        default=True,
        description="Check the passage ranking on the model itself: the answer and the fall "
        "of log p(answer) with the top 1, 2 and 3 passages removed, and with only them kept "
        "(result.checks; at most 6 coalitions beyond the levels', most of them already "
        "evaluated by the document level).",
    )

    @field_validator("question")
    @classmethod
    def _question_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("question must not be blank")
        return value

    @field_validator("documents")
    @classmethod
    def _documents_as_objects(cls, value: list[DocumentIn | str]) -> list[DocumentIn | str]:
        for item in value:
            if isinstance(item, str) and not item.strip():
                raise ValueError("document text must not be blank")
        return value

    @model_validator(mode="after")
    def _levels_are_a_prefix(self) -> ExplainRequest:
        n = len(self.levels)
        if n == 0 or tuple(self.levels) != LEVEL_ORDER[:n]:
            raise ValueError(
                "levels must be one of ['document'], ['document', 'sentence'], "
                "['document', 'sentence', 'word']"
            )
        return self

    def document_objects(self) -> list[DocumentIn]:
        """Documents with plain strings turned into untitled passages."""
        return [d if isinstance(d, DocumentIn) else DocumentIn(text=d) for d in self.documents]


class JobStatus(StrEnum):
    """Lifecycle of a job."""

    queued = "queued"  # accepted, waiting for a worker
    running = "running"  # a worker holds its lease
    succeeded = "succeeded"  # result stored
    failed = "failed"  # error stored; will not be retried
    cancelled = "cancelled"  # cancelled by its owner before it finished


class Progress(BaseModel):
    """Where a job is: ``stage`` is one of load, answer, document, sentence, word, ranking,
    checks."""

    stage: str = "queued"
    done: int = 0
    total: int = 0


class ErrorInfo(BaseModel):
    """A failure that crossed the process boundary: a type for machines, a message for people."""

    type: str
    message: str


class JobAccepted(BaseModel):
    """Response of ``POST /explain``."""

    job_id: str
    status: JobStatus
    status_url: str


class JobView(BaseModel):
    """Response of ``GET /jobs/{id}``."""

    job_id: str
    status: JobStatus
    model: str
    progress: Progress
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    deliveries: int = 0
    cancel_requested: bool = Field(
        default=False, description="DELETE was called; the worker stops at its next batch."
    )
    result: ExplainResult | None = None
    error: ErrorInfo | None = None


class ModelInfo(BaseModel):
    """A model some live worker serves."""

    name: str
    workers: int


class ModelsView(BaseModel):
    default: str
    models: list[ModelInfo]
