"""``textgenshap worker``: take jobs from the queue and explain them with resident engines.

One :class:`Worker` per slot (``--concurrency``): take a lease, renew it from a background
thread while the job runs (:class:`JobWatch`), report progress, check cancellation between
batches, store the outcome, and only then is the job acknowledged. SIGTERM stops taking
jobs, gives the current job ``--grace`` seconds to finish, then hands it back to the
queue (without spending a delivery) and exits. The same class runs inside
``textgenshap serve`` in the embedded default, over the in-process queue.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from service.contract.jobs import (
    JobQueue,
    Lease,
    Outcome,
    QueueUnavailable,
    WorkerInfo,
    over_delivered,
)
from service.contract.schemas import ErrorInfo
from service.contract.settings import Settings
from worker.engine.heap import release_free_memory
from worker.job_watch import JobWatch
from worker.metrics import WorkerMetrics
from worker.resident_engines import exact_session, load_engines, open_session

log = logging.getLogger("textgenshap.worker")
TAKE_TIMEOUT = 1.0  # seconds one take() may block; bounds shutdown latency


def _retriable(exc: Exception) -> bool:
    """Bad input fails at once; anything else (engine crash, OOM, ...) is retried."""
    from worker.engine.errors import ContextTooLong, FastModeUnsupported

    return not isinstance(exc, ValueError | ContextTooLong | FastModeUnsupported)


class Worker:
    """One slot taking jobs for ``engines`` (served name -> Engine) from ``queue``."""

    def __init__(
        self,
        queue: JobQueue,
        engines: dict[str, Any],
        settings: Settings,
        metrics: WorkerMetrics,
        worker_id: str | None = None,
        poll_seconds: float = TAKE_TIMEOUT,
    ) -> None:
        self.queue, self.engines, self.settings, self.metrics = queue, engines, settings, metrics
        self.worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._stopping = threading.Event()
        self._stop_at = float("inf")
        self._busy = False
        self._poll = poll_seconds

    # --- lifecycle
    def stop(self, grace: float) -> None:
        """Take no new job; the current one may run ``grace`` more seconds, then goes back."""
        self._stop_at = min(self._stop_at, time.monotonic() + grace)
        self._stopping.set()

    def info(self) -> WorkerInfo:
        return WorkerInfo(
            worker_id=self.worker_id,
            models=sorted(self.engines),
            host=socket.gethostname(),
            pid=os.getpid(),
            busy=self._busy,
        )

    def serve(self) -> None:
        """Take and run jobs until :meth:`stop`; heartbeats run alongside."""
        beat = threading.Thread(target=self._heartbeats, daemon=True, name="heartbeat")
        beat.start()
        try:
            while not self._stopping.is_set():
                self._take_and_run()
        finally:
            self._stopping.set()
            beat.join()
            self._quietly(lambda: self.queue.unregister(self.worker_id))

    def _heartbeats(self) -> None:
        while True:
            self._quietly(lambda: self.queue.heartbeat(self.info()))
            self.metrics.sample_memory()
            if self._stopping.wait(self.settings.heartbeat_seconds):
                return

    def _quietly(self, action: Callable[[], object]) -> None:
        try:
            action()
        except QueueUnavailable as exc:
            log.warning("queue unavailable: %s", exc)

    def _take_and_run(self) -> None:
        try:
            lease = self.queue.take(self.worker_id, sorted(self.engines), self._poll)
        except QueueUnavailable as exc:
            log.warning("queue unavailable, retrying: %s", exc)
            self._stopping.wait(1.0)
            return
        if lease is None:
            return
        if self._stopping.is_set():
            self._quietly(lambda: self.queue.release(lease))
            return
        self._busy = True
        self.metrics.busy.set(1)
        try:
            self.run(lease)
        finally:
            self._busy = False
            self.metrics.busy.set(0)
            release_free_memory()  # a job's freed batches, back to the system (engine/heap)

    # --- one job
    def run(self, lease: Lease) -> None:
        """Run one leased job to an outcome and store it, or hand the job back."""
        if lease.deliveries > self.settings.max_deliveries:
            error = over_delivered(
                lease.deliveries - 1, self.settings.max_deliveries, lease.job.last_error
            )
            self._store(lease, Outcome.failed(error), None)
            return
        log.info("job %s: start (model %s, delivery %d)", lease.job_id, lease.job.model,
                 lease.deliveries)  # fmt: skip
        with JobWatch(self.queue, lease, self.settings, lambda: self._stop_at) as watch:
            verdict, stats = self._explain(lease, watch)
        # the lease thread has stopped: a release now cannot be undone by a renewal
        if watch.lost:
            log.warning("job %s: lease lost; outcome discarded", lease.job_id)
        elif isinstance(verdict, Outcome):
            self._store(lease, verdict, stats)
        else:
            self._hand_back(lease, verdict)

    def _explain(self, lease: Lease, watch: JobWatch) -> tuple[Outcome | Retry, Any]:
        from worker.explain import JobCancelled, run_explanation

        request, session = lease.job.request, None
        try:
            if request is None:  # dropped when a job ends; a lease only holds a live job
                raise LookupError("the job has ended: its request is no longer stored")
            engine = self.engines[lease.job.model]
            session = open_session(engine, request, self.settings.max_tokens)
            result = run_explanation(
                request,
                session,
                model=lease.job.model,
                progress=watch.progress,
                should_cancel=watch.should_cancel,
                max_units=self.settings.max_units_per_level,
                exact_session=exact_session(engine, request),
            )
            return Outcome.succeeded(result), session.stats
        except JobCancelled:
            if watch.expired:
                return Outcome.failed(watch.deadline_error()), getattr(session, "stats", None)
            verdict = Outcome.cancelled() if watch.cancelled else Retry(None)
            return verdict, getattr(session, "stats", None)
        except Exception as exc:  # noqa: BLE001 - every failure becomes the job's error
            return self._failure(lease, exc), getattr(session, "stats", None)

    def _failure(self, lease: Lease, exc: Exception) -> Outcome | Retry:
        """The job's failed outcome, or a retry when the error may be transient."""
        error = ErrorInfo(type=type(exc).__name__, message=str(exc) or repr(exc))
        # the message may quote the documents (tokenizer, model errors): it goes to the
        # job's owner, and to the log only at DEBUG (docs/reliability.md)
        log.warning("job %s: delivery %d failed: %s", lease.job_id, lease.deliveries, error.type)
        log.debug("job %s: %s: %s", lease.job_id, error.type, error.message)
        if not _retriable(exc):
            return Outcome.failed(error)
        if lease.deliveries >= self.settings.max_deliveries:
            message = (
                f"{error.message} (failed on all {lease.deliveries} deliveries; "
                f"max_deliveries={self.settings.max_deliveries})"
            )
            return Outcome.failed(ErrorInfo(type=error.type, message=message))
        return Retry(error)

    def _hand_back(self, lease: Lease, retry: Retry) -> None:
        """Return the job to the queue: after a failure (spending the delivery) or at
        shutdown (not spending it), so that another worker takes it at once."""
        if retry.error is not None:
            self._quietly(lambda: self.queue.note_error(lease, retry.error))  # type: ignore[arg-type]
        self._quietly(lambda: self.queue.release(lease, spend=retry.error is not None))
        log.info("job %s: handed back (%s)", lease.job_id,
                 "will retry" if retry.error else "shutdown")  # fmt: skip

    def _store(self, lease: Lease, outcome: Outcome, stats: Any) -> None:
        try:
            stored = self.queue.finish(lease, outcome)
        except QueueUnavailable as exc:  # the lease expires; another delivery redoes it
            log.warning("job %s: outcome not stored: %s", lease.job_id, exc)
            return
        if stored:
            self.metrics.job_ended(outcome.status.value, outcome.result, stats)
        log.info("job %s: %s%s", lease.job_id, outcome.status.value,
                 "" if stored else " (not stored: lease lost or job already ended)")  # fmt: skip


@dataclass(frozen=True)
class Retry:
    """Hand the job back: after ``error`` (a spent delivery), or at shutdown (None)."""

    error: ErrorInfo | None


# --- the command line
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--redis",
        default=None,
        help="Redis URL, e.g. redis://127.0.0.1:6379/0 (default: TEXTGENSHAP_REDIS_URL)",
    )
    parser.add_argument(
        "--model",
        action="append",
        dest="models",
        metavar="NAME",
        help="model to serve (repeatable); default: TEXTGENSHAP_DEFAULT_MODEL",
    )
    parser.add_argument("--metrics-port", type=int, default=9400, help="0 disables /metrics")
    parser.add_argument(
        "--metrics-host",
        default="127.0.0.1",
        help="address the metrics listen on (loopback by default; 0.0.0.0 in a container)",
    )
    parser.add_argument("--concurrency", type=int, default=1, help="jobs run at once")
    parser.add_argument(
        "--grace", type=float, default=20.0, help="seconds a job may finish after SIGTERM"
    )


def _install_signals(workers: list[Worker], grace: float) -> None:
    """First SIGTERM/SIGINT: drain with grace; a second one: hand back at once."""
    calls = {"n": 0}

    def handle(signum: int, _frame: object) -> None:
        calls["n"] += 1
        log.info("signal %d: stopping (%s)", signum, "grace" if calls["n"] == 1 else "now")
        for worker in workers:
            worker.stop(grace if calls["n"] == 1 else 0.0)

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)


def main(args: argparse.Namespace) -> int:
    """Run ``--concurrency`` worker slots against Redis until SIGTERM."""
    from prometheus_client import CollectorRegistry, start_http_server

    from service.queues.redis_queue import RedisQueue

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.concurrency < 1:
        raise SystemExit("--concurrency must be at least 1")
    settings = Settings(redis_url=args.redis) if args.redis else Settings()
    if settings.embedded:
        raise SystemExit("a worker needs Redis: pass --redis URL or set TEXTGENSHAP_REDIS_URL")
    base_id = f"{socket.gethostname()}-{os.getpid()}"
    registry = CollectorRegistry()
    metrics = WorkerMetrics(registry, base_id)
    engines = load_engines(args.models or [settings.default_model], settings, metrics)
    if args.metrics_port:
        start_http_server(args.metrics_port, addr=args.metrics_host, registry=registry)
    queue = RedisQueue(settings)
    workers = [
        Worker(queue, engines, settings, metrics, worker_id=f"{base_id}-{i}")
        for i in range(args.concurrency)
    ]
    _install_signals(workers, args.grace)
    threads = [threading.Thread(target=w.serve, name=w.worker_id) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        while thread.is_alive():  # join with a timeout keeps signals deliverable
            thread.join(0.5)
    queue.close()
    return 0
