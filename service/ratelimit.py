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
from collections.abc import Callable, Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request

from service.auth import OwnerDep, caller_from_headers
from service.contract.jobs import Limiter
from service.contract.settings import Settings


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
