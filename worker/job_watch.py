"""A running job's watch: its lease kept alive, its progress written, its stop decided.

:class:`JobWatch` renews the lease from a background thread, writes progress at most
every :data:`PROGRESS_INTERVAL` seconds, and answers the pipeline's ``should_cancel``
between batches: the owner cancelled, the lease was lost, shutdown's grace ran out, or
the job passed its deadline (a fixed cap, or :class:`DerivedDeadline` from its own speed).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from service.contract.jobs import JobQueue, Lease, QueueUnavailable
from service.contract.schemas import ErrorInfo, Progress
from service.contract.settings import Settings

log = logging.getLogger("textgenshap.worker")
PROGRESS_INTERVAL = 0.25  # seconds between progress writes within one stage
CANCEL_CHECK_INTERVAL = 0.1  # seconds between cancellation reads (one HMGET each)


@dataclass(frozen=True)
class DerivedDeadline:
    """A job's deadline from its own speed: the full-context answer (one uncached prompt
    and its decode, the dearest coalition a job has) times the coalitions it may decode,
    times a safety factor. Cached prefixes and batching make real coalitions cheaper, so
    only a job far slower than its own answer predicts (a poison job) meets it."""

    answer_seconds: float
    coalitions: int
    factor: float
    floor: float

    @property
    def seconds(self) -> float:
        return max(self.floor, self.factor * self.answer_seconds * self.coalitions)

    def describe(self) -> str:
        return (
            f"{self.seconds:.1f} s: job_deadline_factor={self.factor:g} x the "
            f"full-context answer's {self.answer_seconds:.3f} s x {self.coalitions} planned "
            f"coalitions, at least job_deadline_floor_seconds={self.floor:g}"
        )


class JobWatch:
    """Keeps one lease alive and answers ``should_cancel`` for the pipeline.

    A background thread renews the lease every third of its length; if renewal fails
    the lease is lost (another worker may own the job) and the job stops at its next
    batch without storing anything.
    """

    def __init__(
        self, queue: JobQueue, lease: Lease, settings: Settings, stop_at: Callable[[], float]
    ) -> None:  # noqa: E501
        self.queue, self.lease, self.settings, self._stop_at = queue, lease, settings, stop_at
        self.lost = self.cancelled = self.expired = False
        limit = settings.job_deadline_seconds
        self._started = time.monotonic()
        self._deadline = self._started + limit if limit > 0 else float("inf")
        self._derived: DerivedDeadline | None = None
        self._done = threading.Event()
        self._last_progress: tuple[str, float] = ("", 0.0)
        self._last_check = 0.0
        self._thread = threading.Thread(target=self._renew_loop, daemon=True, name="lease")

    def __enter__(self) -> JobWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()
        self._thread.join()

    def _renew_loop(self) -> None:
        while not self._done.wait(self.settings.lease_seconds / 3):
            try:
                if not self.queue.renew(self.lease):
                    self.lost = True
                    log.warning("job %s: lease lost; stopping it", self.lease.job_id)
                    return
            except QueueUnavailable as exc:  # nobody can steal it while the store is down
                log.warning("job %s: lease renewal failed: %s", self.lease.job_id, exc)

    @property
    def shutting_down(self) -> bool:
        return time.monotonic() >= self._stop_at()

    def should_cancel(self) -> bool:
        """True when the owner cancelled, the lease was lost, shutdown's grace ran out, or
        the job's deadline passed (``expired``)."""
        if self.lost or self.cancelled or self.shutting_down:
            return True
        if time.monotonic() >= self._deadline:
            self.expired = True
            return True
        clock = time.monotonic()
        if clock - self._last_check >= CANCEL_CHECK_INTERVAL:
            self._last_check = clock
            try:
                self.cancelled = self.queue.cancel_requested(self.lease.job_id)
            except QueueUnavailable:
                return False
        return self.cancelled

    def deadline_error(self) -> ErrorInfo:
        """The failed job's error: deadlines fail at once, a redelivery would only repeat it."""
        cap = self.settings.job_deadline_seconds
        derived = self._derived
        if derived is not None and (cap <= 0 or derived.seconds < cap):
            reason = derived.describe()
        else:
            reason = f"job_deadline_seconds={cap:g}"
        return ErrorInfo(
            type="JobDeadlineExceeded",
            message=f"the job ran past its deadline ({reason}); ask for a smaller budget, "
            "fewer levels or fewer documents",
        )

    def _derive_deadline(self) -> None:
        """Once the full-context answer is in: the deadline from this job's own speed."""
        request, factor = self.lease.job.request, self.settings.job_deadline_factor
        if request is None or factor <= 0 or self._derived is not None:
            return
        self._derived = DerivedDeadline(
            answer_seconds=time.monotonic() - self._started,
            coalitions=len(request.levels) * request.budget,
            factor=factor,
            floor=self.settings.job_deadline_floor_seconds,
        )
        self._deadline = min(self._deadline, self._started + self._derived.seconds)

    def progress(self, stage: str, done: int, total: int) -> None:
        """Write progress at most every PROGRESS_INTERVAL seconds, and at each new stage."""
        if stage == "answer" and done == total:
            self._derive_deadline()
        clock = time.monotonic()
        last_stage, last_time = self._last_progress
        if stage == last_stage and clock - last_time < PROGRESS_INTERVAL and done < total:
            return
        self._last_progress = (stage, clock)
        try:
            self.queue.progress(self.lease, Progress(stage=stage, done=done, total=total))
        except QueueUnavailable as exc:
            log.warning("job %s: progress not stored: %s", self.lease.job_id, exc)
