"""What the Redis adapters share: key names and lifetimes, the Lua scripts, the
connection, and the mapping of Redis failures to :class:`QueueUnavailable`.

Every key lives under ``Settings.key_prefix``. The queue (:mod:`redis_queue`) and the rate
limiter (:mod:`redis_limiter`) run on one connection, the queue's.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError
from redis.exceptions import TimeoutError as RedisTimeoutError

from service.contract.jobs import JobRecord, QueueUnavailable
from service.contract.settings import Settings


def connect(settings: Settings) -> Any:
    """A client for ``settings.redis_url`` that decodes replies to str (hence ``Any``:
    redis-py's annotations assume bytes)."""
    return redis.Redis.from_url(
        settings.redis_url,
        decode_responses=True,
        socket_timeout=settings.redis_timeout_seconds + 2.0,
        socket_connect_timeout=settings.redis_timeout_seconds,
        health_check_interval=10,
    )


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


QUEUE_SCRIPTS = {
    "submit": SUBMIT_LUA,
    "start": START_LUA,
    "renew": RENEW_LUA,
    "set_field": SET_FIELD_LUA,
    "finish": FINISH_LUA,
    "release": RELEASE_LUA,
    "cancel": CANCEL_LUA,
    "forget_consumer": FORGET_CONSUMER_LUA,
}


class RedisStore:
    """A connection (the given client, or a new one) with ``scripts`` registered on it, and
    key names under the deployment's prefix: what the queue and the limiter share."""

    def __init__(self, settings: Settings, client: Any, scripts: dict[str, str]) -> None:
        self._settings, self._prefix = settings, settings.key_prefix
        self._redis: Any = client or connect(settings)
        self._scripts = {name: self._redis.register_script(text) for name, text in scripts.items()}

    def _key(self, template: str, **parts: str) -> str:
        return self._prefix + template.format(**parts)

    def _run(self, name: str, keys: list[str], args: list[Any]) -> Any:
        with redis_guard():
            return self._scripts[name](keys=keys, args=args)

    def _job_key(self, job_id: str) -> str:
        return self._key(JOB_KEY, job_id=job_id)

    def _stream(self, model: str) -> str:
        return self._key(STREAM_KEY, model=model)


def parse_job(fields: dict[str, str] | list[str]) -> JobRecord:
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
