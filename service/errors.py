"""Every error the gateway can answer with, mapped to its HTTP status in one place.

Client mistakes (4xx on input) show in ``textgenshap_http_requests_total{status}``;
``textgenshap_rejected_requests_total{reason}`` counts only requests turned away for
capacity or protection (queue_full, unavailable, body_too_large; later rate_limit), which
is what the alerts watch.

Field errors keep FastAPI's shape, ``{"detail": [{"loc", "msg", "type"}]}``, and their
``msg`` starts with the field's dotted path so that a person reading only the message
knows what to fix. Anything else is ``{"detail": "..."}``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute, Match

from service.contract.jobs import IdempotencyMismatch, QueueFull, QueueUnavailable
from service.metrics import GatewayMetrics
from service.ratelimit import check_unparsed

logger = logging.getLogger(__name__)


class RequestRejected(Exception):
    """Input that is well-formed but not acceptable here (limits, unknown model): 4xx."""

    def __init__(self, loc: Sequence[str | int], message: str, status: int = 422) -> None:
        super().__init__(message)
        self.loc = list(loc)
        self.message = message
        self.status = status


class JobNotFound(Exception):
    """No job with this id (never existed, expired, or not the caller's): 404."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"job {job_id!r} not found (unknown id, or its record expired)")


class JobConflict(Exception):
    """The job's state does not allow the operation (cancelling a finished job): 409."""


def field_error(loc: Sequence[str | int], message: str, kind: str) -> dict[str, Any]:
    """One entry of a 422 ``detail`` list, its message prefixed by the field path."""
    path = ".".join(str(part) for part in loc if part != "body") or "body"
    return {"loc": list(loc), "msg": f"{path}: {message}", "type": kind}


async def _unparsed_guard(request: Request) -> Response | None:
    """The 401 or 429 a body that could not be decoded must meet before its 422."""
    try:
        check_unparsed(request)
    except StarletteHTTPException as exc:
        return await http_exception_handler(request, exc)
    return None


async def _validation(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    if any(err.get("type") == "json_invalid" for err in exc.errors()):
        refused = await _unparsed_guard(request)
        if refused is not None:
            return refused
    detail = [
        field_error(err.get("loc", ["body"]), str(err.get("msg", "invalid")), err["type"])
        for err in exc.errors()
    ]
    return JSONResponse({"detail": detail}, status_code=422)


def _rejected(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestRejected)
    kind = "too_large" if exc.status == 413 else "value_error"
    return JSONResponse(
        {"detail": [field_error(exc.loc, exc.message, kind)]}, status_code=exc.status
    )


def _idempotency(_: Request, exc: Exception) -> JSONResponse:
    detail = [field_error(["header", "Idempotency-Key"], str(exc), "idempotency_mismatch")]
    return JSONResponse({"detail": detail}, status_code=422)


async def _http(request: Request, exc: Exception) -> Response:
    """FastAPI answers a body it cannot decode (not UTF-8) with a bare 400; make it the
    same 422 as any other malformed JSON. Other HTTP errors keep FastAPI's handling."""
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400 and exc.detail == "There was an error parsing the body":
        refused = await _unparsed_guard(request)
        if refused is not None:
            return refused
        detail = [field_error(["body"], "the body is not valid JSON text (UTF-8)", "json_invalid")]
        return JSONResponse({"detail": detail}, status_code=422)
    if exc.status_code == 405:  # Starlette lists only the first matching route's methods
        exc.headers = {"Allow": ", ".join(_allowed_methods(request))}
    return await http_exception_handler(request, exc)


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at this path (GET and DELETE are two routes)."""
    routes: list[BaseRoute] = request.app.router.routes
    return [
        method
        for method in ("DELETE", "GET", "HEAD", "PATCH", "POST", "PUT")
        if any(r.matches({**request.scope, "method": method})[0] == Match.FULL for r in routes)
    ]


def install(app: FastAPI, metrics: GatewayMetrics, retry_after: int) -> None:
    """Register the one mapping from error type to status on ``app``."""

    def queue_full(_: Request, exc: Exception) -> JSONResponse:
        metrics.rejected("queue_full")
        headers = {"Retry-After": str(retry_after)}
        return JSONResponse({"detail": str(exc)}, status_code=429, headers=headers)

    def unavailable(_: Request, exc: Exception) -> JSONResponse:
        # the cause names internal addresses: for the operator's log, not the caller
        logger.warning("503 %s (%s)", exc, exc.__cause__)
        metrics.rejected("unavailable")
        headers = {"Retry-After": str(retry_after)}
        return JSONResponse({"detail": str(exc)}, status_code=503, headers=headers)

    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(RequestRejected, _rejected)
    app.add_exception_handler(IdempotencyMismatch, _idempotency)
    app.add_exception_handler(QueueFull, queue_full)
    app.add_exception_handler(QueueUnavailable, unavailable)
    app.add_exception_handler(
        JobNotFound, lambda _r, e: JSONResponse({"detail": str(e)}, status_code=404)
    )
    app.add_exception_handler(
        JobConflict, lambda _r, e: JSONResponse({"detail": str(e)}, status_code=409)
    )
