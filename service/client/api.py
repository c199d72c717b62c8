"""Python client for the textgenshap REST API (sync ``Client`` and async ``AsyncClient``).

Both speak the contract in ``service.contract.schemas`` and return its pydantic models, so callers
(the CLI, the tests, notebooks) never handle raw JSON. Any non-2xx answer becomes an
``ApiError`` carrying the status and the server's ``detail``; a job that ends badly
becomes ``JobFailed`` / ``JobCancelled``; a wait that runs out of time ``JobTimeout``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel

from service.client.errors import ApiError, JobCancelled, JobFailed, JobTimeout
from service.contract.results import ExplainResult
from service.contract.schemas import ExplainRequest, JobAccepted, JobStatus, JobView, ModelsView

ModelT = TypeVar("ModelT", bound=BaseModel)
ProgressCallback = Callable[[JobView], None]
RETRYABLE = frozenset({502, 503, 504})
TERMINAL = frozenset({JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled})


def auth_headers(api_key: str | None) -> dict[str, str]:
    """Both header spellings, so the key works whichever one the gateway checks."""
    if not api_key:
        return {}
    return {"Authorization": f"Bearer {api_key}", "X-API-Key": api_key}


def _raise_for_error(response: httpx.Response) -> None:
    """``ApiError`` with the server's ``detail`` for any non-2xx answer."""
    if response.is_success:
        return
    try:
        body = response.json()
        detail = body.get("detail", body) if isinstance(body, dict) else body
    except ValueError:
        detail = response.text or response.reason_phrase
    raise ApiError(response.status_code, detail)


def _parse(model: type[ModelT], response: httpx.Response) -> ModelT:
    _raise_for_error(response)
    return model.model_validate(response.json())


def _submit_args(
    request: ExplainRequest | dict[str, Any], idempotency_key: str | None
) -> dict[str, Any]:
    body = ExplainRequest.model_validate(request) if isinstance(request, dict) else request
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    return {"json": body.model_dump(mode="json", exclude_none=True), "headers": headers}


class _Deadline:
    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.at = time.monotonic() + timeout

    def passed(self) -> bool:
        return time.monotonic() >= self.at

    def pause(self, interval: float) -> float:
        return min(interval, max(self.at - time.monotonic(), 0.0))


def _transient(exc: Exception, deadline: _Deadline) -> bool:
    """Worth polling again: the gateway is restarting or overloaded, and time is left."""
    status = exc.status if isinstance(exc, ApiError) else None
    return (status is None or status in RETRYABLE) and not deadline.passed()


def _observe(
    job: JobView, deadline: _Deadline, on_progress: ProgressCallback | None
) -> JobView | None:
    """One poll's verdict: the succeeded job, None to poll again, or a raised error."""
    if on_progress is not None:
        on_progress(job)
    if job.status in TERMINAL:
        return _finished(job)
    if deadline.passed():
        raise JobTimeout(job, deadline.timeout)
    return None


def _finished(job: JobView) -> JobView:
    """The job if it succeeded; the matching typed error otherwise."""
    if job.status is JobStatus.cancelled:
        raise JobCancelled(job)
    if job.status is JobStatus.failed:
        raise JobFailed(job)
    return job


def _result(job: JobView) -> ExplainResult:
    if job.result is None:
        raise JobFailed(job)
    return job.result


class Client:
    """Blocking client; use as a context manager or call ``close()``."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._http = httpx.Client(
            base_url=base_url, headers=auth_headers(api_key), timeout=timeout, transport=transport
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def models(self) -> ModelsView:
        """The default model and the models live workers serve."""
        return _parse(ModelsView, self._http.get("/models"))

    def submit(
        self, request: ExplainRequest | dict[str, Any], idempotency_key: str | None = None
    ) -> JobAccepted:
        """Enqueue an explanation; the same ``idempotency_key`` returns the same job."""
        response = self._http.post("/explain", **_submit_args(request, idempotency_key))
        return _parse(JobAccepted, response)

    def get(self, job_id: str) -> JobView:
        return _parse(JobView, self._http.get(f"/jobs/{job_id}"))

    def cancel(self, job_id: str) -> JobView:
        """Ask the job to stop (cooperative: a running job stops at its next batch, with
        ``cancel_requested`` set); returns its state. A finished job gives ``ApiError`` 409."""
        return _parse(JobView, self._http.delete(f"/jobs/{job_id}"))

    def wait(
        self,
        job_id: str,
        timeout: float = 600.0,
        poll_interval: float = 0.5,
        on_progress: ProgressCallback | None = None,
    ) -> JobView:
        """Poll until the job succeeds (returned) or fails, is cancelled or times out (raised).

        A gateway that is briefly unavailable (502/503/504, connection refused) is polled
        again until ``timeout``: a restart must not lose the caller its job."""
        deadline = _Deadline(timeout)
        while True:
            try:
                job = self.get(job_id)
            except (ApiError, httpx.TransportError) as exc:
                if not _transient(exc, deadline):
                    raise
            else:
                if (finished := _observe(job, deadline, on_progress)) is not None:
                    return finished
            time.sleep(deadline.pause(poll_interval))

    def explain(
        self,
        request: ExplainRequest | dict[str, Any],
        *,
        idempotency_key: str | None = None,
        timeout: float = 600.0,
        poll_interval: float = 0.5,
        on_progress: ProgressCallback | None = None,
    ) -> ExplainResult:
        """Submit and wait: the result of a succeeded job."""
        accepted = self.submit(request, idempotency_key)
        job = self.wait(accepted.job_id, timeout, poll_interval, on_progress)
        return _result(job)


class AsyncClient:
    """The same API as ``Client`` for asyncio code; use ``async with`` or ``aclose()``."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url, headers=auth_headers(api_key), timeout=timeout, transport=transport
        )

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def models(self) -> ModelsView:
        return _parse(ModelsView, await self._http.get("/models"))

    async def submit(
        self, request: ExplainRequest | dict[str, Any], idempotency_key: str | None = None
    ) -> JobAccepted:
        response = await self._http.post("/explain", **_submit_args(request, idempotency_key))
        return _parse(JobAccepted, response)

    async def get(self, job_id: str) -> JobView:
        return _parse(JobView, await self._http.get(f"/jobs/{job_id}"))

    async def cancel(self, job_id: str) -> JobView:
        return _parse(JobView, await self._http.delete(f"/jobs/{job_id}"))

    async def wait(
        self,
        job_id: str,
        timeout: float = 600.0,
        poll_interval: float = 0.5,
        on_progress: ProgressCallback | None = None,
    ) -> JobView:
        deadline = _Deadline(timeout)
        while True:
            try:
                job = await self.get(job_id)
            except (ApiError, httpx.TransportError) as exc:
                if not _transient(exc, deadline):
                    raise
            else:
                if (finished := _observe(job, deadline, on_progress)) is not None:
                    return finished
            await asyncio.sleep(deadline.pause(poll_interval))

    async def explain(
        self,
        request: ExplainRequest | dict[str, Any],
        *,
        idempotency_key: str | None = None,
        timeout: float = 600.0,
        poll_interval: float = 0.5,
        on_progress: ProgressCallback | None = None,
    ) -> ExplainResult:
        accepted = await self.submit(request, idempotency_key)
        job = await self.wait(accepted.job_id, timeout, poll_interval, on_progress)
        return _result(job)
