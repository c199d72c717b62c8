"""The job queue contract shared by the Redis queue, the in-process queue and the worker.

A gateway submits, reads and cancels jobs; a worker takes a *lease* on one job, renews it
while working, reports progress and stores exactly one outcome. Both adapters
(``service.queues``: ``RedisQueue`` and ``MemoryQueue``) implement
:class:`JobQueue` with the same semantics, so the gateway and the worker loop never know
which one they talk to. This module holds no I/O.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from pydantic import BaseModel, Field

from service.contract.results import ExplainResult
from service.contract.schemas import ErrorInfo, ExplainRequest, JobStatus, JobView, Progress

TERMINAL: frozenset[JobStatus] = frozenset(
    {JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled}
)
ANONYMOUS = "anonymous"  # owner of every job until API keys exist (issue 8)


class QueueError(Exception):
    """Base of the queue's own failures (the gateway maps each to one HTTP status)."""


class QueueUnavailable(QueueError):
    """The backing store cannot be reached; callers should retry later (503)."""


class QueueFull(QueueError):
    """The queue holds ``limit`` unfinished jobs already (429)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the queue is full ({limit} unfinished jobs); retry later")
        self.limit = limit


class IdempotencyMismatch(QueueError):
    """An Idempotency-Key was reused with a different request body (422)."""

    def __init__(self) -> None:
        super().__init__("Idempotency-Key was already used with a different request body")


class JobRecord(BaseModel):
    """Everything stored about a job; ``view()`` is what its owner may see."""

    job_id: str
    model: str
    # None once the job has ended: its documents (up to max_body_bytes) are dropped at
    # once rather than kept with the result for result_ttl_seconds; nothing reads them then
    request: ExplainRequest | None = None
    owner: str = ANONYMOUS
    status: JobStatus = JobStatus.queued
    progress: Progress = Field(default_factory=Progress)
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    deliveries: int = 0
    cancel_requested: bool = False
    result: ExplainResult | None = None
    error: ErrorInfo | None = None
    last_error: ErrorInfo | None = None  # error of an earlier delivery, kept for the final one

    def view(self) -> JobView:
        """The public shape of the record (``GET /jobs/{id}``)."""
        return JobView(
            **self.model_dump(
                include={
                    "job_id",
                    "status",
                    "model",
                    "progress",
                    "created_at",
                    "started_at",
                    "finished_at",
                    "deliveries",
                    "cancel_requested",
                }
            ),
            result=self.result,
            error=self.error,
        )


@dataclass(frozen=True)
class NewJob:
    """A validated submission: what ``JobQueue.submit`` needs to create a record."""

    model: str
    request: ExplainRequest
    owner: str = ANONYMOUS
    idempotency_key: str | None = None
    job_id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def body_hash(self) -> str:
        """Digest of what the job computes: the same key must come with the same body."""
        payload = f"{self.model}\n{self.request.model_dump_json()}"
        return hashlib.sha256(payload.encode()).hexdigest()

    def record(self) -> JobRecord:
        return JobRecord(
            job_id=self.job_id,
            model=self.model,
            request=self.request,
            owner=self.owner,
            created_at=now(),
        )


@dataclass(frozen=True)
class Submitted:
    """Outcome of a submission: ``created`` is False when an Idempotency-Key replayed."""

    job: JobRecord
    created: bool


@dataclass
class Lease:
    """A worker's hold on one job. ``deliveries`` counts this one (1 = first delivery)."""

    job: JobRecord
    worker_id: str
    deliveries: int
    token: str = ""  # adapter-specific handle (the stream entry id in Redis)

    @property
    def job_id(self) -> str:
        return self.job.job_id


@dataclass(frozen=True)
class Outcome:
    """What a worker stores when a job ends: exactly one of result / error, or cancelled."""

    status: JobStatus
    result: ExplainResult | None = None
    error: ErrorInfo | None = None

    @classmethod
    def succeeded(cls, result: ExplainResult) -> Outcome:
        return cls(JobStatus.succeeded, result=result)

    @classmethod
    def failed(cls, error: ErrorInfo) -> Outcome:
        return cls(JobStatus.failed, error=error)

    @classmethod
    def cancelled(cls) -> Outcome:
        return cls(JobStatus.cancelled)


class WorkerInfo(BaseModel):
    """What a live worker announces with its heartbeat."""

    worker_id: str
    models: list[str]
    host: str = ""
    pid: int = 0
    busy: bool = False
    started_at: datetime = Field(default_factory=lambda: now())


@dataclass(frozen=True)
class QueueCounts:
    """Queue gauges and finished-job counters, read at scrape time."""

    queued: int
    pending: int
    finished: dict[str, int]


UNBORN_SECONDS = 60  # a limiter's reservation without a job record after this long is stale


class Limiter(Protocol):
    """Per-key abuse limits (``service.ratelimit``): a submit rate and a cap on unfinished
    jobs. Each queue adapter makes its own (``JobQueue.limiter()``), on its own store."""

    def wait_seconds(self, owner: str) -> float: ...
    def reserve(self, owner: str, job_id: str) -> bool: ...
    def unreserve(self, owner: str, job_id: str) -> None: ...


class JobQueue(Protocol):
    """The one interface between gateway, worker loop and the store behind them."""

    # --- gateway side
    def submit(self, job: NewJob) -> Submitted: ...
    def get(self, job_id: str) -> JobRecord | None: ...
    def cancel(self, job_id: str) -> JobRecord | None: ...
    def counts(self) -> QueueCounts: ...
    def workers(self) -> list[WorkerInfo]: ...
    def ping(self) -> None: ...
    def limiter(self) -> Limiter: ...

    # --- worker side
    def heartbeat(self, worker: WorkerInfo) -> None: ...
    def unregister(self, worker_id: str) -> None: ...
    def take(self, worker_id: str, models: list[str], timeout: float) -> Lease | None: ...
    def renew(self, lease: Lease) -> bool: ...
    def progress(self, lease: Lease, progress: Progress) -> bool: ...
    def cancel_requested(self, job_id: str) -> bool: ...
    def note_error(self, lease: Lease, error: ErrorInfo) -> None: ...
    def finish(self, lease: Lease, outcome: Outcome) -> bool: ...
    def release(self, lease: Lease, spend: bool = False) -> None: ...
    def close(self) -> None: ...


def now() -> datetime:
    """Timezone-aware UTC now (all stored timestamps are UTC)."""
    return datetime.now(UTC)


def over_delivered(deliveries: int, max_deliveries: int, last: ErrorInfo | None) -> ErrorInfo:
    """The error a job ends with when it was delivered too often (a poison job)."""
    reason = (
        f"; last error: {last.type}: {last.message}"
        if last
        else ("; the workers holding it stopped without reporting (killed or crashed)")
    )
    return ErrorInfo(
        type="MaxDeliveriesExceeded",
        message=f"job was delivered {deliveries} time{'s' if deliveries != 1 else ''} "
        "without finishing "
        f"(max_deliveries={max_deliveries}){reason}",
    )
