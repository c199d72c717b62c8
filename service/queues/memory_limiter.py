"""The per-key abuse limits in one process (the embedded mode), with the Redis limiter's
semantics under a lock; ``MemoryQueue.limiter()`` makes one."""

from __future__ import annotations

import threading
import time

from service.contract.jobs import TERMINAL, UNBORN_SECONDS, JobQueue
from service.contract.settings import Settings


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
