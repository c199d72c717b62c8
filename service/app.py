"""The application factory: one FastAPI app over any :class:`service.contract.jobs.JobQueue`.

Embedded and Redis modes differ only in the queue passed in; the gateway never imports
torch or the worker.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from fastapi import FastAPI, Request, Response
from prometheus_client import CollectorRegistry
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service import errors, viewer
from service.auth import KeyRing, host_name
from service.contract.jobs import JobQueue
from service.contract.settings import Settings
from service.metrics import GatewayMetrics
from service.routes import router

API_VERSION = "0.1.0"


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes with 413 before anything parses them.

    A declared Content-Length over the limit is refused at once. Whatever the headers
    say, a body is then read up to the limit and replayed to the app: the bytes actually
    read count, so a small Content-Length beside a chunked body (which the server frames
    as chunked) cannot slip a large body past the limit.
    """

    def __init__(self, app: ASGIApp, limit: int, metrics: GatewayMetrics) -> None:
        self.app, self.limit, self.metrics = app, limit, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(send)
            return
        messages: list[Message] = []
        size = 0
        while scope["method"] in ("POST", "PUT", "PATCH"):
            message = await receive()
            messages.append(message)
            size += len(message.get("body", b""))
            if size > self.limit:
                await self._refuse(send)
                return
            if not message.get("more_body", False):
                break
        await self.app(scope, self._replay(messages, receive), send)

    @staticmethod
    def _replay(messages: list[Message], receive: Receive) -> Receive:
        async def replayed() -> Message:
            return messages.pop(0) if messages else await receive()

        return replayed

    async def _refuse(self, send: Send) -> None:
        self.metrics.rejected("body_too_large")
        body = b'{"detail":"request body is larger than max_body_bytes=%d"}' % self.limit
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


SECURITY_HEADERS = {
    "content-security-policy": "default-src 'self'; frame-ancestors 'none'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'",
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}
"""On every response: the viewer loads only its own scripts and styles, is never framed,
and no response is sniffed into another type."""


async def security_headers(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    response = await call_next(request)
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


class HostCheck:
    """400 for a request whose Host header names none of ``allowed`` (see
    :func:`service.auth.allowed_hosts`)."""

    def __init__(self, app: ASGIApp, allowed: Sequence[str]) -> None:
        self.app, self.allowed = app, frozenset(allowed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            header = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
            if host_name(header) not in self.allowed:
                body = b'{"detail":"this gateway does not answer for that Host header"}'
                headers = [(b"content-type", b"application/json")]
                headers.append((b"content-length", b"%d" % len(body)))
                await send({"type": "http.response.start", "status": 400, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def create_app(
    settings: Settings,
    queue: JobQueue,
    registry: CollectorRegistry | None = None,
    on_shutdown: Callable[[], None] | None = None,
    allowed_hosts: Sequence[str] | None = None,
) -> FastAPI:
    """The gateway over ``queue``; ``registry`` lets an embedded worker share /metrics,
    ``on_shutdown`` runs when the server stops (the embedded worker hands back its job),
    ``allowed_hosts`` (None: any) the Host header names it answers."""
    registry = registry or CollectorRegistry()
    metrics = GatewayMetrics(registry, queue)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        if on_shutdown is not None:
            await asyncio.to_thread(on_shutdown)

    app = FastAPI(
        lifespan=lifespan,
        title="textgenshap",
        version=API_VERSION,
        description="Explain long-context LLM answers with hierarchical Shapley values "
        "(TextGenSHAP). Submit a job, poll it, read ranked answers and passages.",
    )
    app.state.settings, app.state.queue, app.state.metrics = settings, queue, metrics
    app.state.keys = KeyRing.from_settings(settings)  # service.auth: who owns which job
    app.state.limiter = queue.limiter()  # per-key limits (service.ratelimit), the queue's own
    app.include_router(router)
    app.include_router(viewer.router)
    errors.install(app, metrics, settings.retry_after_seconds)
    app.middleware("http")(metrics.middleware)
    app.middleware("http")(security_headers)
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes, metrics=metrics)
    if allowed_hosts is not None:
        app.add_middleware(HostCheck, allowed=allowed_hosts)
    return app


def openapi_schema(app: FastAPI | None = None) -> dict[str, Any]:
    """The app's generated OpenAPI document (what ``openapi.yaml`` publishes)."""
    from service.queues.memory_queue import MemoryQueue

    if app is None:
        settings = Settings()
        app = create_app(settings, MemoryQueue(settings))
    return app.openapi()
