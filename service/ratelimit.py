"""Per-key abuse limits on ``POST /explain``: a submit rate and a cap on unfinished jobs.

Rate: a token bucket per key (``rate_limit_per_minute`` refill, ``rate_limit_burst``
capacity). Cap: at most ``max_active_jobs_per_key`` queued or running jobs per key; a
reservation is taken before enqueueing and dropped when the submit does not create a job.
Finished jobs are pruned from a key's set lazily, at its next submit (by reading their
status), so the worker's finish path needs no change. Both checks are one Lua script each
in Redis (atomic across gateways, clock from Redis ``TIME``) and a lock in the embedded
mode. Refusals are 429 with ``Retry-After``.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable, Iterator
from typing import Annotated, Any, Protocol

import redis
from fastapi import Depends, HTTPException, Request

from service.auth import OwnerDep, caller_from_headers
from service.contract.jobs import TERMINAL, JobQueue
from service.contract.settings import Settings
from service.queue import JOB_KEY, redis_guard

# --- key names (under Settings.key_prefix) and lifetimes
BUCKET_KEY = "rate:{owner}"  # hash: tokens, at (seconds, Redis clock)
ACTIVE_KEY = "active:{owner}"  # zset: job_id -> reservation time
ACTIVE_TTL_SECONDS = 7 * 86_400  # as long as an unfinished job record lives
UNBORN_SECONDS = 60  # a reservation without a job record after this long is stale

BUCKET_LUA = """
-- KEYS: bucket; ARGV: tokens per second, burst, ttl. Returns seconds to wait ('0' = go).
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local b = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = math.min(burst, (tonumber(b[1]) or burst) + (now - (tonumber(b[2]) or now)) * rate)
if tokens < 1 then return tostring((1 - tokens) / rate) end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens - 1), 'at', tostring(now))
redis.call('EXPIRE', KEYS[1], ARGV[3])
return '0'
"""

ACTIVE_LUA = """
-- KEYS: active set; ARGV: cap, job_id, job key prefix, unborn seconds, ttl. 1 = reserved.
local now = tonumber(redis.call('TIME')[1])
local held = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
local count = 0
for i = 1, #held, 2 do
  local status = redis.call('HGET', ARGV[3] .. held[i], 'status')
  local ended = status == 'succeeded' or status == 'failed' or status == 'cancelled'
  if ended or ((not status) and now - tonumber(held[i + 1]) > tonumber(ARGV[4])) then
    redis.call('ZREM', KEYS[1], held[i])
  else
    count = count + 1
  end
end
if count >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], now, ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 1
"""


class Limiter(Protocol):
    """The two checks; implemented over Redis and in memory with the same semantics."""

    def wait_seconds(self, owner: str) -> float: ...
    def reserve(self, owner: str, job_id: str) -> bool: ...
    def unreserve(self, owner: str, job_id: str) -> None: ...


def _per_second(settings: Settings) -> float:
    return settings.rate_limit_per_minute / 60.0


class MemoryLimiter:
    """In-process limiter for the embedded mode; ``status`` reads a job's status."""

    def __init__(self, settings: Settings, queue: JobQueue) -> None:
        self._settings, self._queue = settings, queue
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}
        self._active: dict[str, dict[str, float]] = {}

    def wait_seconds(self, owner: str) -> float:
        rate, burst = _per_second(self._settings), float(self._settings.rate_limit_burst)
        with self._lock:
            clock = time.monotonic()
            tokens, at = self._buckets.get(owner, (burst, clock))
            tokens = min(burst, tokens + (clock - at) * rate)
            if tokens < 1:
                return (1 - tokens) / rate
            self._buckets[owner] = (tokens - 1, clock)
            return 0.0

    def reserve(self, owner: str, job_id: str) -> bool:
        with self._lock:
            held = self._active.setdefault(owner, {})
            for known in [j for j, at in held.items() if self._ended(j, at)]:
                del held[known]
            if len(held) >= self._settings.max_active_jobs_per_key:
                return False
            held[job_id] = time.monotonic()
            return True

    def _ended(self, job_id: str, reserved_at: float) -> bool:
        record = self._queue.get(job_id)
        if record is None:
            return time.monotonic() - reserved_at > UNBORN_SECONDS
        return record.status in TERMINAL

    def unreserve(self, owner: str, job_id: str) -> None:
        with self._lock:
            self._active.get(owner, {}).pop(job_id, None)


class RedisLimiter:
    """Limiter shared by every gateway through Redis (one Lua script per check)."""

    def __init__(self, settings: Settings, client: Any = None) -> None:
        self._settings, self._prefix = settings, settings.key_prefix
        self._redis: Any = client or redis.Redis.from_url(
            settings.redis_url,
            decode_responses=True,
            socket_timeout=settings.redis_timeout_seconds + 2.0,
            socket_connect_timeout=settings.redis_timeout_seconds,
        )
        self._bucket = self._redis.register_script(BUCKET_LUA)
        self._reserve = self._redis.register_script(ACTIVE_LUA)

    def wait_seconds(self, owner: str) -> float:
        key = self._prefix + BUCKET_KEY.format(owner=owner)
        burst = self._settings.rate_limit_burst
        ttl = math.ceil(burst / _per_second(self._settings)) + 60
        with redis_guard():
            return float(self._bucket(keys=[key], args=[_per_second(self._settings), burst, ttl]))

    def reserve(self, owner: str, job_id: str) -> bool:
        key = self._prefix + ACTIVE_KEY.format(owner=owner)
        job_prefix = self._prefix + JOB_KEY.format(job_id="")
        cap = self._settings.max_active_jobs_per_key
        args: list[str | int] = [cap, job_id, job_prefix, UNBORN_SECONDS, ACTIVE_TTL_SECONDS]
        with redis_guard():
            return bool(self._reserve(keys=[key], args=args))

    def unreserve(self, owner: str, job_id: str) -> None:
        with redis_guard():
            self._redis.zrem(self._prefix + ACTIVE_KEY.format(owner=owner), job_id)


def limiter_for(settings: Settings, queue: JobQueue) -> Limiter:
    """The limiter matching the queue's mode."""
    return MemoryLimiter(settings, queue) if settings.embedded else RedisLimiter(settings)


def _too_many(request: Request, reason: str, seconds: float, message: str) -> HTTPException:
    request.app.state.metrics.rejected(reason)
    headers = {"Retry-After": str(max(1, math.ceil(seconds)))}
    return HTTPException(status_code=429, detail=message, headers=headers)


def rate_limited(request: Request, owner: OwnerDep) -> str:
    """Dependency of ``POST /explain``: the caller's owner id, or 429 when its bucket is
    empty. Runs before the body is validated, so malformed floods are limited too."""
    settings: Settings = request.app.state.settings
    if settings.rate_limit_per_minute == 0:
        return owner
    wait = request.app.state.limiter.wait_seconds(owner)
    if wait > 0:
        raise _too_many(
            request,
            "rate_limit",
            wait,
            f"rate limit: at most {settings.rate_limit_per_minute} submissions per minute "
            f"per API key (burst {settings.rate_limit_burst}); retry later",
        )
    return owner


RateLimitedOwner = Annotated[str, Depends(rate_limited)]


def check_unparsed(request: Request) -> None:
    """The key check (401) and the rate limit (429) of ``POST /explain`` for a body FastAPI
    could not decode: it decodes JSON before resolving dependencies, so without this a
    flood of broken bodies would meet neither."""
    if request.method == "POST" and request.url.path == "/explain":
        rate_limited(request, caller_from_headers(request))


@contextlib.contextmanager
def active_slot(request: Request, owner: str, job_id: str) -> Iterator[Callable[[], None]]:
    """Hold one of ``owner``'s active-job slots for ``job_id`` (429 when none is free).
    Yields ``release``: call it when the submit did not create this job; an exception
    inside the block releases the slot too."""
    settings: Settings = request.app.state.settings
    limiter: Limiter = request.app.state.limiter
    cap = settings.max_active_jobs_per_key
    if cap and not limiter.reserve(owner, job_id):
        raise _too_many(
            request,
            "active_jobs",
            settings.retry_after_seconds,
            f"too many unfinished jobs for this API key (max_active_jobs_per_key={cap}); "
            "wait for some to finish or cancel them",
        )

    def release() -> None:
        if cap:
            limiter.unreserve(owner, job_id)

    try:
        yield release
    except BaseException:
        release()
        raise
