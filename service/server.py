"""``textgenshap serve``: the HTTP gateway, with an in-process worker when no Redis is set.

Embedded default (no ``--redis``): one process holds the gateway, an in-process queue and
one worker thread with the model, and ``/metrics`` shows gateway and worker metrics
together. With ``--redis URL``: the gateway only; workers run as ``textgenshap worker``.
"""

from __future__ import annotations

import argparse
import logging

from prometheus_client import CollectorRegistry

from service.app import create_app
from service.auth import AuthConfigError, allowed_hosts, check_startup
from service.contract.settings import Settings
from service.embedded import EmbeddedWorker, embedded

log = logging.getLogger("textgenshap.serve")


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
        from service.queues.redis_queue import RedisQueue

        queue = RedisQueue(settings)
    stop = worker.stop if worker is not None else None
    hosts = allowed_hosts(settings, args.host)
    app = create_app(settings, queue, registry, on_shutdown=stop, allowed_hosts=hosts)  # type: ignore[arg-type]
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0
