"""The in-process queue of the embedded default (no Redis): same contract, one process.

Semantics follow ``service.queues.redis_queue.RedisQueue`` where they mean anything in one process:
leases expire and are re-delivered with a delivery count, results are stored once (only
by the lease holder), records expire after the result TTL, the queue has a bound, and an
Idempotency-Key maps to one job. Everything is guarded by one lock; ``take`` waits on a
condition variable instead of polling.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from dataclasses import dataclass

from service.contract.jobs import (
    TERMINAL,
    IdempotencyMismatch,
    JobRecord,
    Lease,
    NewJob,
    Outcome,
    QueueCounts,
    QueueFull,
    Submitted,
    WorkerInfo,
    now,
)
from service.contract.schemas import ErrorInfo, JobStatus, Progress
from service.contract.settings import Settings
from service.queues.memory_limiter import MemoryLimiter

ACTIVE_TTL_SECONDS = 7 * 86_400  # same as the Redis queue: unfinished records outlive waits
SWEEP_SECONDS = 30.0
"""How often expired records, delivery counts and idempotency keys are dropped: the
embedded worker calls ``take`` at least every lease/4, so this runs on that clock even
when nobody reads a job again."""


@dataclass
class _Held:
    worker_id: str
    expires: float
    deliveries: int


class MemoryQueue:
    """A thread-safe in-process :class:`service.contract.jobs.JobQueue`."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._lock = threading.Condition()
        self._records: dict[str, JobRecord] = {}
        self._expires: dict[str, float] = {}
        self._waiting: dict[str, deque[str]] = {}
        self._held: dict[str, _Held] = {}
        self._deliveries: Counter[str] = Counter()
        self._idempotency: dict[str, tuple[str, str, float]] = {}
        self._finished: Counter[str] = Counter()
        self._workers: dict[str, tuple[WorkerInfo, float]] = {}
        self._swept = time.monotonic()

    # --- gateway side
    def submit(self, job: NewJob) -> Submitted:
        with self._lock:
            self._sweep()
            replay = self._replay(job)
            if replay is not None:
                return Submitted(replay, created=False)
            if self._unfinished() >= self._settings.queue_max:
                raise QueueFull(self._settings.queue_max)
            record = job.record()
            self._records[job.job_id] = record
            self._expires[job.job_id] = time.monotonic() + ACTIVE_TTL_SECONDS
            self._waiting.setdefault(job.model, deque()).append(job.job_id)
            if job.idempotency_key:
                expiry = time.monotonic() + self._settings.result_ttl_seconds
                key = f"{job.owner}:{job.idempotency_key}"
                self._idempotency[key] = (job.job_id, job.body_hash(), expiry)
            self._lock.notify_all()
            return Submitted(record.model_copy(deep=True), created=True)

    def _replay(self, job: NewJob) -> JobRecord | None:
        if not job.idempotency_key:
            return None
        entry = self._idempotency.get(f"{job.owner}:{job.idempotency_key}")
        if entry is None or entry[2] < time.monotonic():
            return None
        job_id, digest, _ = entry
        if digest != job.body_hash():
            raise IdempotencyMismatch()
        return self._live(job_id)

    def _sweep(self, force: bool = False) -> None:
        """Drop ended records past their TTL (with their delivery counts) and expired
        idempotency keys; unfinished jobs are never dropped here."""
        clock = time.monotonic()
        if not force and clock - self._swept < SWEEP_SECONDS:
            return
        self._swept = clock
        for job_id in [j for j, expiry in self._expires.items() if expiry < clock]:
            record = self._records.get(job_id)
            if record is None or record.status in TERMINAL:
                self._records.pop(job_id, None)
                self._expires.pop(job_id, None)
                self._deliveries.pop(job_id, None)
        for key in [k for k, entry in self._idempotency.items() if entry[2] < clock]:
            del self._idempotency[key]

    def _unfinished(self) -> int:
        return sum(len(q) for q in self._waiting.values()) + len(self._held)

    def _live(self, job_id: str) -> JobRecord | None:
        if self._expires.get(job_id, 0.0) < time.monotonic():
            self._records.pop(job_id, None)
            self._expires.pop(job_id, None)
            return None
        record = self._records.get(job_id)
        return record.model_copy(deep=True) if record else None

    def get(self, job_id: str) -> JobRecord | None:
        with self._lock:
            return self._live(job_id)

    def cancel(self, job_id: str) -> JobRecord | None:
        with self._lock:
            record = self._records.get(job_id) if self._live(job_id) else None
            if record is None or record.status in TERMINAL:
                return self._live(job_id)
            if record.status == JobStatus.queued:  # waiting, or handed back by a worker
                if self._held.pop(job_id, None) is None:
                    self._waiting[record.model].remove(job_id)
                self._end(record, Outcome.cancelled())
            else:
                record.cancel_requested = True
            return record.model_copy(deep=True)

    def counts(self) -> QueueCounts:
        with self._lock:
            queued = sum(len(q) for q in self._waiting.values())
            return QueueCounts(queued, len(self._held), dict(self._finished))

    def workers(self) -> list[WorkerInfo]:
        with self._lock:
            clock = time.monotonic()
            return [info for info, expiry in self._workers.values() if expiry > clock]

    def ping(self) -> None:
        return None

    # --- worker side
    def heartbeat(self, worker: WorkerInfo) -> None:
        with self._lock:
            ttl = 3 * self._settings.heartbeat_seconds
            self._workers[worker.worker_id] = (worker, time.monotonic() + ttl)

    def unregister(self, worker_id: str) -> None:
        with self._lock:
            self._workers.pop(worker_id, None)

    def take(self, worker_id: str, models: list[str], timeout: float) -> Lease | None:
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                lease = self._next(worker_id, models)
                if lease is not None:
                    return lease
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                # wake up at least every lease/4 so that expired leases are reclaimed
                self._lock.wait(min(remaining, self._settings.lease_seconds / 4))

    def _next(self, worker_id: str, models: list[str]) -> Lease | None:
        self._sweep()
        job_id = self._expired_lease(models) or self._pop_waiting(models)
        while job_id is not None:
            record = self._records.get(job_id) if self._live(job_id) else None
            if record is not None and record.status not in TERMINAL:
                return self._start(record, worker_id)
            self._held.pop(job_id, None)
            job_id = self._expired_lease(models) or self._pop_waiting(models)
        return None

    def _expired_lease(self, models: list[str]) -> str | None:
        clock = time.monotonic()
        for job_id, held in self._held.items():
            record = self._records.get(job_id)
            if held.expires < clock and (record is None or record.model in models):
                return job_id
        return None

    def _pop_waiting(self, models: list[str]) -> str | None:
        for model in models:
            queue = self._waiting.get(model)
            if queue:
                return queue.popleft()
        return None

    def _start(self, record: JobRecord, worker_id: str) -> Lease:
        self._deliveries[record.job_id] += 1
        deliveries = self._deliveries[record.job_id]
        expires = time.monotonic() + self._settings.lease_seconds
        self._held[record.job_id] = _Held(worker_id, expires, deliveries)
        record.status = JobStatus.running
        record.started_at = record.started_at or now()
        record.deliveries = deliveries
        return Lease(record.model_copy(deep=True), worker_id, deliveries)

    def _holds(self, lease: Lease) -> _Held | None:
        held = self._held.get(lease.job_id)
        if held is None or held.worker_id != lease.worker_id:
            return None
        if held.deliveries != lease.deliveries:
            return None
        return held

    def renew(self, lease: Lease) -> bool:
        with self._lock:
            held = self._holds(lease)
            if held is not None:
                held.expires = time.monotonic() + self._settings.lease_seconds
            return held is not None

    def progress(self, lease: Lease, progress: Progress) -> bool:
        with self._lock:
            record = self._records.get(lease.job_id)
            if self._holds(lease) is None or record is None:
                return False
            record.progress = progress.model_copy()
            return True

    def cancel_requested(self, job_id: str) -> bool:
        with self._lock:
            record = self._records.get(job_id)
            return record is None or record.cancel_requested or record.status in TERMINAL

    def note_error(self, lease: Lease, error: ErrorInfo) -> None:
        with self._lock:
            record = self._records.get(lease.job_id)
            if record is not None and self._holds(lease) is not None:
                record.last_error = error

    def finish(self, lease: Lease, outcome: Outcome) -> bool:
        with self._lock:
            record = self._records.get(lease.job_id)
            if self._holds(lease) is None or record is None:
                return False
            del self._held[lease.job_id]
            if record.status in TERMINAL:
                return False
            self._end(record, outcome)
            return True

    def _end(self, record: JobRecord, outcome: Outcome) -> None:
        record.status = outcome.status
        record.result, record.error = outcome.result, outcome.error
        record.request = None  # the documents are not needed once the job has ended
        record.finished_at = now()
        self._expires[record.job_id] = time.monotonic() + self._settings.result_ttl_seconds
        self._finished[outcome.status.value] += 1

    def release(self, lease: Lease, spend: bool = False) -> None:
        with self._lock:
            held = self._holds(lease)
            if held is None:
                return
            if not spend:  # a hand-back at shutdown: the next take counts it again
                self._deliveries[lease.job_id] -= 1
            held.expires = 0.0
            record = self._records.get(lease.job_id)
            if record is not None and record.status == JobStatus.running:
                record.status = JobStatus.queued
            self._lock.notify_all()

    def limiter(self) -> MemoryLimiter:
        """The per-key limits in this process (service.ratelimit)."""
        return MemoryLimiter(self._settings, self)

    def close(self) -> None:
        return None
