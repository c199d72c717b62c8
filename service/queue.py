"""The Redis job queue: the only module that speaks Redis.

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
import json
import time
from collections.abc import Iterator
from typing import Any

import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from service.contract.jobs import (
    IdempotencyMismatch,
    JobRecord,
    Lease,
    NewJob,
    Outcome,
    QueueCounts,
    QueueFull,
    QueueUnavailable,
    Submitted,
    WorkerInfo,
    now,
)
from service.contract.schemas import ErrorInfo, JobStatus, Progress
from service.contract.settings import Settings

# --- key names (all under Settings.key_prefix) and lifetimes, in one place
JOB_KEY = "job:{job_id}"  # hash: record, status, progress, timestamps, result/error, ...
STREAM_KEY = "stream:{model}"  # stream of {"job": job_id} entries for one model
STREAMS_KEY = "streams"  # set of model names that have a stream (for the queue bound)
IDEMPOTENCY_KEY = "idem:{owner}:{key}"  # string "job_id digest"
FINISHED_KEY = "finished"  # hash: status -> number of jobs that ended so
WORKER_KEY = "worker:{worker_id}"  # string: WorkerInfo JSON, expires without heartbeats
WORKERS_KEY = "workers"  # set of worker ids (pruned when their key has expired)
GROUP = "workers"  # the one consumer group of every stream

ACTIVE_TTL_SECONDS = 7 * 86_400  # a queued/running record outlives any sane wait
HEARTBEAT_TTL_FACTOR = 3  # a worker is dead after 3 missed heartbeats
RELEASE_IDLE_MS = 86_400_000  # a handed-back entry looks long idle: reclaimed at once
TERMINAL_LUA = (
    "local function terminal(s) return s == 'succeeded' or s == 'failed' or s == 'cancelled' end\n"  # noqa: E501
)
OWNS_LUA = """
local function owns(stream, id, consumer)
  local p = redis.call('XPENDING', stream, 'workers', id, id, 1)
  return #p == 1 and p[1][2] == consumer
end
"""

SUBMIT_LUA = """
-- KEYS: job, stream, streams, idempotency; ARGV: job_id, digest, queue_max, active_ttl,
-- idem_ttl, model, record, has_idem, stream_prefix, request
if ARGV[8] == '1' then
  local prior = redis.call('GET', KEYS[4])
  if prior then return {'replay', prior} end
end
local total = 0
for _, m in ipairs(redis.call('SMEMBERS', KEYS[3])) do
  total = total + redis.call('XLEN', ARGV[9] .. m)
end
if total >= tonumber(ARGV[3]) then return {'full', ''} end
local entry = redis.call('XADD', KEYS[2], '*', 'job', ARGV[1])
redis.call('HSET', KEYS[1], 'record', ARGV[7], 'request', ARGV[10], 'status', 'queued',
           'entry', entry, 'stream', KEYS[2], 'deliveries', '0')
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('SADD', KEYS[3], ARGV[6])
if ARGV[8] == '1' then
  redis.call('SET', KEYS[4], ARGV[1] .. ' ' .. ARGV[2], 'EX', ARGV[5])
end
return {'created', entry}
"""

START_LUA = (
    TERMINAL_LUA
    + """
-- KEYS: job, stream; ARGV: entry, consumer, deliveries, started_at
local status = redis.call('HGET', KEYS[1], 'status')
if (not status) or terminal(status) or redis.call('HGET', KEYS[1], 'entry') ~= ARGV[1] then
  redis.call('XACK', KEYS[2], 'workers', ARGV[1])
  redis.call('XDEL', KEYS[2], ARGV[1])
  return false
end
redis.call('HSET', KEYS[1], 'status', 'running', 'deliveries', ARGV[3], 'worker', ARGV[2])
redis.call('HSETNX', KEYS[1], 'started_at', ARGV[4])
return redis.call('HGETALL', KEYS[1])
"""
)

RENEW_LUA = (
    OWNS_LUA
    + """
-- KEYS: stream; ARGV: entry, consumer
if not owns(KEYS[1], ARGV[1], ARGV[2]) then return 0 end
redis.call('XCLAIM', KEYS[1], 'workers', ARGV[2], 0, ARGV[1], 'JUSTID')
return 1
"""
)

SET_FIELD_LUA = (
    OWNS_LUA
    + """
-- KEYS: job, stream; ARGV: entry, consumer, field, value
if not owns(KEYS[2], ARGV[1], ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[3], ARGV[4])
return 1
"""
)

FINISH_LUA = (
    TERMINAL_LUA
    + OWNS_LUA
    + """
-- KEYS: job, stream, finished; ARGV: entry, consumer, status, field, payload, at, ttl
if not owns(KEYS[2], ARGV[1], ARGV[2]) then return 0 end
redis.call('XACK', KEYS[2], 'workers', ARGV[1])
redis.call('XDEL', KEYS[2], ARGV[1])
local status = redis.call('HGET', KEYS[1], 'status')
if (not status) or terminal(status) then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[3], 'finished_at', ARGV[6])
redis.call('HDEL', KEYS[1], 'request')
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], ARGV[4], ARGV[5]) end
redis.call('EXPIRE', KEYS[1], ARGV[7])
redis.call('HINCRBY', KEYS[3], ARGV[3], 1)
return 1
"""
)

RELEASE_LUA = (
    OWNS_LUA
    + """
-- KEYS: job, stream; ARGV: entry, consumer, retry_count, idle_ms
if not owns(KEYS[2], ARGV[1], ARGV[2]) then return 0 end
-- a large IDLE makes the entry reclaimable at once; RETRYCOUNT one less than the
-- deliveries so far gives the delivery back (the next XAUTOCLAIM counts it again)
redis.call('XCLAIM', KEYS[2], 'workers', ARGV[2], 0, ARGV[1], 'IDLE', ARGV[4],
           'RETRYCOUNT', ARGV[3], 'JUSTID')
if redis.call('HGET', KEYS[1], 'status') == 'running' then
  redis.call('HSET', KEYS[1], 'status', 'queued')
end
return 1
"""
)

FORGET_CONSUMER_LUA = """
-- KEYS: stream; ARGV: consumer. Only a consumer with nothing pending may go: deleting
-- one that still holds entries would drop them from the group (lost jobs).
if #redis.call('XPENDING', KEYS[1], 'workers', '-', '+', 1, ARGV[1]) > 0 then return 0 end
redis.call('XGROUP', 'DELCONSUMER', KEYS[1], 'workers', ARGV[1])
return 1
"""

CANCEL_LUA = """
-- KEYS: job, finished; ARGV: at, ttl
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'queued' then
  -- XACK too: a handed-back entry is pending for its last holder, and must not be again
  local stream, entry = redis.call('HGET', KEYS[1], 'stream'), redis.call('HGET', KEYS[1], 'entry')
  redis.call('XACK', stream, 'workers', entry)
  redis.call('XDEL', stream, entry)
  redis.call('HSET', KEYS[1], 'status', 'cancelled', 'finished_at', ARGV[1])
  redis.call('HDEL', KEYS[1], 'request')
  redis.call('EXPIRE', KEYS[1], ARGV[2])
  redis.call('HINCRBY', KEYS[2], 'cancelled', 1)
elseif status == 'running' then
  redis.call('HSET', KEYS[1], 'cancel', '1')
end
return redis.call('HGETALL', KEYS[1])
"""


@contextlib.contextmanager
def redis_guard() -> Iterator[None]:
    """Turn Redis failures that are not the caller's into :class:`QueueUnavailable` (the
    gateway's 503 + Retry-After; a worker logs and retries): connection loss, time-outs,
    and a Redis at its ``maxmemory`` refusing writes."""
    try:
        yield
    except (RedisConnectionError, RedisTimeoutError) as exc:
        raise QueueUnavailable("Redis is unavailable; retry later") from exc
    except OutOfMemoryError as exc:
        raise QueueUnavailable("Redis is out of memory; retry later") from exc


def _parse(fields: dict[str, str] | list[str]) -> JobRecord:
    """A job hash (dict, or flat list from a Lua HGETALL) as a :class:`JobRecord`."""
    if isinstance(fields, list):
        fields = dict(zip(fields[::2], fields[1::2], strict=True))
    data: dict[str, Any] = json.loads(fields["record"])
    if "request" in fields:  # a separate field, deleted when the job ends
        data["request"] = json.loads(fields["request"])
    data["status"] = fields["status"]
    data["deliveries"] = int(fields.get("deliveries", 0))
    data["cancel_requested"] = fields.get("cancel") == "1"
    for name in ("progress", "result", "error", "last_error"):
        if name in fields:
            data[name] = json.loads(fields[name])
    for name in ("started_at", "finished_at"):
        data[name] = fields.get(name)
    return JobRecord.model_validate(data)


class RedisQueue:
    """:class:`service.contract.jobs.JobQueue` over Redis Streams (see module docstring)."""

    def __init__(self, settings: Settings, client: redis.Redis | None = None) -> None:
        self._settings = settings
        self._prefix = settings.key_prefix
        # Any: redis-py's annotations assume bytes replies; ours are decoded str
        self._redis: Any = client or redis.Redis.from_url(
            settings.redis_url,
            decode_responses=True,
            socket_timeout=settings.redis_timeout_seconds + 2.0,
            socket_connect_timeout=settings.redis_timeout_seconds,
            health_check_interval=10,
        )
        self._scripts = {
            name: self._redis.register_script(text)
            for name, text in {
                "submit": SUBMIT_LUA,
                "start": START_LUA,
                "renew": RENEW_LUA,
                "set_field": SET_FIELD_LUA,
                "finish": FINISH_LUA,
                "release": RELEASE_LUA,
                "cancel": CANCEL_LUA,
                "forget_consumer": FORGET_CONSUMER_LUA,
            }.items()
        }
        self._groups: set[str] = set()
        self._cursors: dict[str, str] = {}

    def _key(self, template: str, **parts: str) -> str:
        return self._prefix + template.format(**parts)

    def _run(self, name: str, keys: list[str], args: list[Any]) -> Any:
        with redis_guard():
            return self._scripts[name](keys=keys, args=args)

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
        return _parse(fields) if fields else None

    def cancel(self, job_id: str) -> JobRecord | None:
        keys = [self._job_key(job_id), self._key(FINISHED_KEY)]
        fields = self._run("cancel", keys, [now().isoformat(), self._settings.result_ttl_seconds])
        return _parse(fields) if fields else None

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
        return Lease(_parse(fields), worker_id, deliveries, token=entry_id)

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

    def close(self) -> None:
        self._redis.close()

    def _job_key(self, job_id: str) -> str:
        return self._key(JOB_KEY, job_id=job_id)

    def _stream(self, model: str) -> str:
        return self._key(STREAM_KEY, model=model)
