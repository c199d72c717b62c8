"""``textgenshap serve``: the HTTP gateway, with an in-process worker when no Redis is set.

Embedded default (no ``--redis``): one process holds the gateway, an in-process queue and
one worker thread with the model, and ``/metrics`` shows gateway and worker metrics
together. With ``--redis URL``: the gateway only; workers run as ``textgenshap worker``.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading

from prometheus_client import CollectorRegistry

from service.app import create_app
from service.auth import AuthConfigError, allowed_hosts, check_startup
from service.settings import Settings

log = logging.getLogger("textgenshap.serve")
EMBEDDED_GRACE_SECONDS = 5.0  # a running job's time to finish at shutdown before hand-back


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--redis", default=None, help="Redis URL; omit for the embedded mode")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--model",
        default=None,
        help="default model (and, embedded, the model loaded); default gemma-3-270m",
    )
    parser.add_argument("--log-level", default="info")


def settings_from(args: argparse.Namespace) -> Settings:
    """Environment settings, overridden by the command line where given."""
    overrides: dict[str, str] = {}
    if args.redis is not None:
        overrides["redis_url"] = args.redis
    if args.model:
        overrides["default_model"] = args.model
    return Settings(**overrides)  # type: ignore[arg-type]


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
        from worker.loop import Worker, load_engines

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
    from service.memory_queue import MemoryQueue
    from worker.loop import load_engine

    engines = None
    if settings.default_model.startswith("py:"):
        name, engine = load_engine(settings.default_model, settings)
        engines = {name: engine}
        settings = settings.model_copy(update={"default_model": name})
    queue = MemoryQueue(settings)
    return settings, queue, EmbeddedWorker(settings, queue, registry, engines)


def main(args: argparse.Namespace) -> int:
    """Serve until SIGINT/SIGTERM (uvicorn handles the signals and returns)."""
    import uvicorn

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    settings = settings_from(args)
    try:
        check_startup(settings, args.host)
    except AuthConfigError as exc:  # say why, before loading any model
        log.error("%s", exc)
        return 2
    registry = CollectorRegistry()
    worker: EmbeddedWorker | None = None
    if settings.embedded:
        settings, queue, worker = embedded(settings, registry)
        worker.start()
    else:
        from service.queue import RedisQueue

        queue = RedisQueue(settings)
    stop = worker.stop if worker is not None else None
    hosts = allowed_hosts(settings, args.host)
    app = create_app(settings, queue, registry, on_shutdown=stop, allowed_hosts=hosts)  # type: ignore[arg-type]
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0
