"""The embedded default: gateway and worker in one process, the only place they meet.

``textgenshap serve`` without Redis runs an in-process queue and one worker thread with
the model beside the HTTP gateway. Every other module of ``service/`` stays free of the
worker runtime (tests/test_architecture.py): the gateway image has no torch, and this
module imports the worker lazily, only when the embedded mode is chosen.
"""

from __future__ import annotations

import logging
import os
import signal
import threading

from prometheus_client import CollectorRegistry

from service.contract.settings import Settings

log = logging.getLogger("textgenshap.serve")
EMBEDDED_GRACE_SECONDS = 5.0  # a running job's time to finish at shutdown before hand-back


class EmbeddedWorker:
    """The embedded default's worker: loads the model in a thread, then serves jobs.

    Loading in the background lets the HTTP server answer at once; ``/readyz`` reports
    ready once the worker's first heartbeat lands. ``engines`` already loaded (``py:``
    factories, loaded up front to learn their served name) skip the loading step.
    """

    def __init__(
        self,
        settings: Settings,
        queue: object,
        registry: CollectorRegistry,
        engines: dict[str, object] | None = None,
    ) -> None:
        from worker.loop import Worker
        from worker.metrics import WorkerMetrics

        self.settings, self.queue, self.engines = settings, queue, engines
        self.metrics = WorkerMetrics(registry, "embedded")
        for name, engine in (engines or {}).items():
            backend = str(getattr(engine, "attention_backend", "none"))
            self.metrics.model_loaded(name, 0.0, backend, str(getattr(engine, "device", "cpu")))
        self.worker: Worker | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="embedded-worker", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        from worker.loop import Worker
        from worker.resident_engines import load_engines

        try:
            engines = self.engines or load_engines(
                [self.settings.default_model], self.settings, self.metrics
            )
        except Exception:  # the process cannot serve anything: say why and stop it
            log.exception("could not load model %r; stopping", self.settings.default_model)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        self.worker = Worker(self.queue, engines, self.settings, self.metrics, "embedded")  # type: ignore[arg-type]
        if not self._stop.is_set():
            self.worker.serve()

    def stop(self, grace: float = EMBEDDED_GRACE_SECONDS) -> None:
        self._stop.set()
        if self.worker is not None:
            self.worker.stop(grace)
        self._thread.join(grace + 5.0)
        log.info("embedded worker stopped")


def embedded(
    settings: Settings, registry: CollectorRegistry
) -> tuple[Settings, object, EmbeddedWorker]:
    """Settings, in-process queue and worker of the embedded default. A ``py:`` factory
    is loaded here, at once, and its engine's name becomes the default model."""
    from service.queues.memory_queue import MemoryQueue
    from worker.resident_engines import load_engine

    engines = None
    if settings.default_model.startswith("py:"):
        name, engine = load_engine(settings.default_model, settings)
        engines = {name: engine}
        settings = settings.model_copy(update={"default_model": name})
    queue = MemoryQueue(settings)
    return settings, queue, EmbeddedWorker(settings, queue, registry, engines)
