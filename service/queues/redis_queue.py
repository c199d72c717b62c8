"""The Redis job queue (with ``redis_base`` and ``redis_limiter``, all the Redis there is).

Delivery uses Redis Streams with one consumer group (see docs/architecture.md): one stream
per model, ``XREADGROUP`` hands a new entry to exactly one worker, the entry stays in the
group's pending list until ``XACK``; a worker renews its lease by ``XCLAIM``-ing its own
entry (which resets the entry's idle time); an entry idle for longer than the lease is
reclaimed by another worker with ``XAUTOCLAIM``, which also counts deliveries. Every state
change that must not race (submit with idempotency and bound, start, finish, cancel, hand
back) is one Lua script, so it is atomic in Redis. Results are written only by the current
lease holder and only once per job: exactly-once results over at-least-once delivery.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import redis
from redis.exceptions import ResponseError

from service.contract.jobs import (
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
from service.queues.redis_base import (
    ACTIVE_TTL_SECONDS,
    FINISHED_KEY,
    GROUP,
    HEARTBEAT_TTL_FACTOR,
    IDEMPOTENCY_KEY,
    QUEUE_SCRIPTS,
    RELEASE_IDLE_MS,
    STREAM_KEY,
    STREAMS_KEY,
    WORKER_KEY,
    WORKERS_KEY,
    RedisStore,
    parse_job,
    redis_guard,
)
from service.queues.redis_limiter import RedisLimiter


class RedisQueue(RedisStore):
    """:class:`service.contract.jobs.JobQueue` over Redis Streams (see module docstring)."""

    def __init__(self, settings: Settings, client: redis.Redis | None = None) -> None:
        super().__init__(settings, client, QUEUE_SCRIPTS)
        self._groups: set[str] = set()
        self._cursors: dict[str, str] = {}

    # --- gateway side
    def submit(self, job: NewJob) -> Submitted:
        record = job.record()
        idem = self._key(IDEMPOTENCY_KEY, owner=job.owner, key=job.idempotency_key or "")
        keys = [self._job_key(job.job_id), self._stream(job.model), self._key(STREAMS_KEY), idem]
        args = [
            job.job_id,
            job.body_hash(),
            self._settings.queue_max,
            ACTIVE_TTL_SECONDS,
            self._settings.result_ttl_seconds,
            job.model,
            record.model_dump_json(include={"job_id", "model", "owner", "created_at"}),
            "1" if job.idempotency_key else "0",
            self._key(STREAM_KEY, model=""),
            job.request.model_dump_json(),
        ]
        outcome, value = self._run("submit", keys, args)
        if outcome == "full":
            raise QueueFull(self._settings.queue_max)
        if outcome == "created":
            return Submitted(record, created=True)
        return self._replay(job, idem, value)

    def _replay(self, job: NewJob, idem_key: str, value: str) -> Submitted:
        job_id, digest = value.split(" ", 1)
        if digest != job.body_hash():
            raise IdempotencyMismatch()
        prior = self.get(job_id)
        if prior is not None:
            return Submitted(prior, created=False)
        with redis_guard():  # the job expired before its key: the key is free again
            self._redis.delete(idem_key)
        return self.submit(job)

    def get(self, job_id: str) -> JobRecord | None:
        with redis_guard():
            fields = self._redis.hgetall(self._job_key(job_id))
        return parse_job(fields) if fields else None

    def cancel(self, job_id: str) -> JobRecord | None:
        keys = [self._job_key(job_id), self._key(FINISHED_KEY)]
        fields = self._run("cancel", keys, [now().isoformat(), self._settings.result_ttl_seconds])
        return parse_job(fields) if fields else None

    def counts(self) -> QueueCounts:
        with redis_guard():
            models = sorted(self._redis.smembers(self._key(STREAMS_KEY)))
            total = sum(int(self._redis.xlen(self._stream(m))) for m in models)
            pending = sum(self._pending(m) for m in models)
            finished = self._redis.hgetall(self._key(FINISHED_KEY))
        # a cancelled, handed-back entry stays in the PEL until the next XAUTOCLAIM drops it
        queued = max(0, total - pending)
        return QueueCounts(queued, pending, {k: int(v) for k, v in finished.items()})

    def _pending(self, model: str) -> int:
        try:
            return int(self._redis.xpending(self._stream(model), GROUP)["pending"])
        except ResponseError:  # no worker has created the group yet
            return 0

    def workers(self) -> list[WorkerInfo]:
        with redis_guard():
            ids = sorted(self._redis.smembers(self._key(WORKERS_KEY)))
            keys = [self._key(WORKER_KEY, worker_id=i) for i in ids]
            values = self._redis.mget(keys) if keys else []
            gone = [i for i, v in zip(ids, values, strict=True) if v is None]
            if gone:
                self._redis.srem(self._key(WORKERS_KEY), *gone)
        return [WorkerInfo.model_validate_json(v) for v in values if v is not None]

    def ping(self) -> None:
        with redis_guard():
            self._redis.ping()

    # --- worker side
    def heartbeat(self, worker: WorkerInfo) -> None:
        ttl = max(1, round(HEARTBEAT_TTL_FACTOR * self._settings.heartbeat_seconds))
        with redis_guard():
            pipe = self._redis.pipeline()
            pipe.set(self._key(WORKER_KEY, worker_id=worker.worker_id), worker.model_dump_json())
            pipe.expire(self._key(WORKER_KEY, worker_id=worker.worker_id), ttl)
            pipe.sadd(self._key(WORKERS_KEY), worker.worker_id)
            pipe.execute()

    def unregister(self, worker_id: str) -> None:
        """Remove the heartbeat, and the consumer from every group where it holds nothing."""
        with redis_guard():
            self._redis.delete(self._key(WORKER_KEY, worker_id=worker_id))
            self._redis.srem(self._key(WORKERS_KEY), worker_id)
        for model in sorted(self._groups):
            self._run("forget_consumer", [self._stream(model)], [worker_id])

    def take(self, worker_id: str, models: list[str], timeout: float) -> Lease | None:
        deadline = time.monotonic() + timeout
        self._ensure_groups(models)
        while True:
            entry = self._reclaim(worker_id, models) or self._read(
                worker_id, models, max(0.0, min(1.0, deadline - time.monotonic()))
            )
            lease = self._start(worker_id, *entry) if entry else None
            if lease is not None or time.monotonic() >= deadline:
                return lease

    def _ensure_groups(self, models: list[str]) -> None:
        for model in models:
            if model in self._groups:
                continue
            with redis_guard():
                try:
                    self._redis.xgroup_create(self._stream(model), GROUP, id="0", mkstream=True)
                except ResponseError as exc:
                    if "BUSYGROUP" not in str(exc):
                        raise
                self._redis.sadd(self._key(STREAMS_KEY), model)
            self._groups.add(model)

    @contextlib.contextmanager
    def _regroup_on_loss(self) -> Iterator[None]:
        """A stream or group deleted under us (by an operator, or a flush) is recreated on
        the next take instead of crashing the worker."""
        try:
            yield
        except ResponseError as exc:
            if "NOGROUP" not in str(exc) and "UNBLOCKED" not in str(exc):
                raise
            self._groups.clear()
            self._cursors.clear()

    def _reclaim(self, worker_id: str, models: list[str]) -> tuple[str, str, str, int] | None:
        """An entry whose lease expired (its worker died or handed it back), if any."""
        min_idle = int(self._settings.lease_seconds * 1000)
        for model in models:
            stream = self._stream(model)
            with redis_guard(), self._regroup_on_loss():
                cursor, claimed, *_ = self._redis.xautoclaim(
                    stream, GROUP, worker_id, min_idle, self._cursors.get(stream, "0-0"), count=1
                )
            self._cursors[stream] = cursor
            if claimed:
                entry_id, fields = claimed[0]
                return stream, entry_id, fields["job"], self._deliveries(stream, entry_id)
        return None

    def _deliveries(self, stream: str, entry_id: str) -> int:
        with redis_guard():
            info = self._redis.xpending_range(stream, GROUP, entry_id, entry_id, 1)
        return int(info[0]["times_delivered"]) if info else 1

    def _read(
        self, worker_id: str, models: list[str], seconds: float
    ) -> tuple[str, str, str, int] | None:
        streams = {self._stream(m): ">" for m in models}
        block = max(1, int(seconds * 1000))
        with redis_guard(), self._regroup_on_loss():
            reply = self._redis.xreadgroup(GROUP, worker_id, streams, count=1, block=block)
        for stream, entries in reply or []:
            for entry_id, fields in entries:
                return stream, entry_id, fields["job"], 1
        return None

    def _start(
        self, worker_id: str, stream: str, entry_id: str, job_id: str, deliveries: int
    ) -> Lease | None:
        keys = [self._job_key(job_id), stream]
        fields = self._run("start", keys, [entry_id, worker_id, deliveries, now().isoformat()])
        if not fields:
            return None
        return Lease(parse_job(fields), worker_id, deliveries, token=entry_id)

    def renew(self, lease: Lease) -> bool:
        stream = self._stream(lease.job.model)
        return bool(self._run("renew", [stream], [lease.token, lease.worker_id]))

    def _set_field(self, lease: Lease, name: str, value: str) -> bool:
        keys = [self._job_key(lease.job_id), self._stream(lease.job.model)]
        return bool(self._run("set_field", keys, [lease.token, lease.worker_id, name, value]))

    def progress(self, lease: Lease, progress: Progress) -> bool:
        return self._set_field(lease, "progress", progress.model_dump_json())

    def note_error(self, lease: Lease, error: ErrorInfo) -> None:
        self._set_field(lease, "last_error", error.model_dump_json())

    def cancel_requested(self, job_id: str) -> bool:
        with redis_guard():
            cancel, status = self._redis.hmget(self._job_key(job_id), ["cancel", "status"])
        return cancel == "1" or status in (None, "cancelled", "failed", "succeeded")

    def finish(self, lease: Lease, outcome: Outcome) -> bool:
        payload = outcome.result or outcome.error
        name = {JobStatus.succeeded: "result", JobStatus.failed: "error"}.get(outcome.status, "")
        keys = [self._job_key(lease.job_id), self._stream(lease.job.model)]
        args = [
            lease.token,
            lease.worker_id,
            outcome.status.value,
            name,
            payload.model_dump_json() if payload is not None else "",
            now().isoformat(),
            self._settings.result_ttl_seconds,
        ]
        return bool(self._run("finish", [*keys, self._key(FINISHED_KEY)], args))

    def release(self, lease: Lease, spend: bool = False) -> None:
        keys = [self._job_key(lease.job_id), self._stream(lease.job.model)]
        count = lease.deliveries if spend else lease.deliveries - 1
        args = [lease.token, lease.worker_id, count, RELEASE_IDLE_MS]
        self._run("release", keys, args)

    def limiter(self) -> RedisLimiter:
        """The per-key limits on this queue's connection (service.ratelimit)."""
        return RedisLimiter(self._settings, self._redis)

    def close(self) -> None:
        self._redis.close()
