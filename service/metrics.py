"""Gateway metrics (names are a contract with the dashboards; do not rename).

Request counters and latency are recorded by a middleware keyed by the route *template*
(``/jobs/{job_id}``), never the raw path, so label cardinality stays bounded. Queue gauges
and finished-job counters are read from the queue at scrape time: workers count finished
jobs in the store (Redis or in-process), so every gateway reports the same totals.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator

from fastapi import Request, Response
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from service.contract.jobs import JobQueue, QueueUnavailable

FINISHED_STATUSES = ("succeeded", "failed", "cancelled")
REJECTION_REASONS = ("body_too_large", "rate_limit", "active_jobs", "queue_full", "unavailable")
"""Every reason a request is refused before enqueueing; each series exists from the start
(at 0), so dashboards and alerts read 0 rather than "No data" before the first one."""
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
"""Method labels kept as sent; any other method string is counted as "other" (a label per
arbitrary string would grow /metrics without bound)."""


class QueueCollector(Collector):
    """Reads queue depth, pending and finished counts from the queue at scrape time."""

    def __init__(self, queue: JobQueue) -> None:
        self._queue = queue

    def collect(self) -> Iterator[Metric]:
        try:
            counts = self._queue.counts()
        except QueueUnavailable:
            return
        depth = GaugeMetricFamily("textgenshap_queue_depth", "Jobs queued, not yet leased.")
        depth.add_metric([], counts.queued)
        pending = GaugeMetricFamily("textgenshap_queue_pending", "Jobs leased by a worker.")
        pending.add_metric([], counts.pending)
        finished = CounterMetricFamily(
            "textgenshap_jobs_finished", "Jobs that ended, by final status.", labels=["status"]
        )
        for status in FINISHED_STATUSES:
            finished.add_metric([status], counts.finished.get(status, 0))
        yield from (depth, pending, finished)


class GatewayMetrics:
    """The gateway's own instruments, registered on ``registry``."""

    def __init__(self, registry: CollectorRegistry, queue: JobQueue) -> None:
        self.registry = registry
        self.requests = Counter(
            "textgenshap_http_requests",
            "HTTP requests by route template, method and status.",
            ["route", "method", "status"],
            registry=registry,
        )
        self.duration = Histogram(
            "textgenshap_http_request_duration_seconds",
            "HTTP request latency by route template and method.",
            ["route", "method"],
            registry=registry,
        )
        self.submitted = Counter(
            "textgenshap_jobs_submitted", "Jobs accepted, by model.", ["model"], registry=registry
        )
        self.rejections = Counter(
            "textgenshap_rejected_requests",
            "Requests refused before enqueueing, by reason.",
            ["reason"],
            registry=registry,
        )
        for reason in REJECTION_REASONS:
            self.rejections.labels(reason=reason)
        registry.register(QueueCollector(queue))

    def rejected(self, reason: str) -> None:
        if reason not in REJECTION_REASONS:
            raise ValueError(f"unknown rejection reason {reason!r}; add it to REJECTION_REASONS")
        self.rejections.labels(reason=reason).inc()

    async def middleware(
        self, request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        """Count and time every request under its route template."""
        start = time.perf_counter()
        response = await call_next(request)
        route = getattr(request.scope.get("route"), "path", "unmatched")
        method = request.method if request.method in HTTP_METHODS else "other"
        self.duration.labels(route, method).observe(time.perf_counter() - start)
        self.requests.labels(route, method, str(response.status_code)).inc()
        return response
