"""The per-key abuse limits over Redis: one Lua script per check, atomic across gateways,
clock from Redis ``TIME``; on the queue's own connection (``RedisQueue.limiter()``)."""

from __future__ import annotations

import math
from typing import Any

from service.contract.jobs import UNBORN_SECONDS
from service.contract.settings import Settings
from service.queues.redis_base import RedisStore, redis_guard

# --- key names (under Settings.key_prefix) and lifetimes
BUCKET_KEY = "rate:{owner}"  # hash: tokens, at (seconds, Redis clock)
ACTIVE_KEY = "active:{owner}"  # zset: job_id -> reservation time
ACTIVE_TTL_SECONDS = 7 * 86_400  # as long as an unfinished job record lives

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


def _per_second(settings: Settings) -> float:
    return settings.rate_limit_per_minute / 60.0


class RedisLimiter(RedisStore):
    """Limiter shared by every gateway through Redis (one Lua script per check), on the
    queue's connection."""

    def __init__(self, settings: Settings, client: Any) -> None:
        super().__init__(settings, client, {"bucket": BUCKET_LUA, "reserve": ACTIVE_LUA})

    def wait_seconds(self, owner: str) -> float:
        burst, rate = self._settings.rate_limit_burst, _per_second(self._settings)
        ttl = math.ceil(burst / rate) + 60
        return float(self._run("bucket", [self._key(BUCKET_KEY, owner=owner)], [rate, burst, ttl]))

    def reserve(self, owner: str, job_id: str) -> bool:
        job_prefix = self._job_key("")
        cap = self._settings.max_active_jobs_per_key
        args: list[str | int] = [cap, job_id, job_prefix, UNBORN_SECONDS, ACTIVE_TTL_SECONDS]
        return bool(self._run("reserve", [self._key(ACTIVE_KEY, owner=owner)], args))

    def unreserve(self, owner: str, job_id: str) -> None:
        with redis_guard():
            self._redis.zrem(self._key(ACTIVE_KEY, owner=owner), job_id)
