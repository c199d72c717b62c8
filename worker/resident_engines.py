"""The worker's resident engines: loaded once from ``--model`` specs, one session per job.

A spec is a registry name or path (``worker.engine``'s registry) or ``py:module:attr``, a
factory served under its engine's own ``name``. A job's session opens only once its prompt
fits the deployment's token cap (``TEXTGENSHAP_MAX_TOKENS``).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Any

from service.contract.schemas import ExplainRequest
from service.contract.settings import Settings
from worker.engine.loading.factories import is_factory, load_factory
from worker.metrics import WorkerMetrics
from worker.shapley.units import Document

log = logging.getLogger("textgenshap.worker")


def load_engine(spec: str, settings: Settings) -> tuple[str, Any]:
    """(served name, engine) for a ``--model`` value. ``py:module:attr`` names a factory
    (tests, custom engines) and is served under the engine's own ``name``."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if is_factory(spec):
        engine = load_factory(spec)
        return str(engine.name), engine
    from worker.engine.loading.registry import load_engine as registry_load

    return spec, registry_load(spec, cache_dir=settings.model_cache_dir)


def load_engines(specs: list[str], settings: Settings, metrics: WorkerMetrics) -> dict[str, Any]:
    """Load every model once, recording load time and what it runs on."""
    engines: dict[str, Any] = {}
    for spec in specs:
        start = time.perf_counter()
        name, engine = load_engine(spec, settings)
        seconds = time.perf_counter() - start
        metrics.model_loaded(
            name,
            seconds,
            getattr(engine, "attention_backend", "none"),
            getattr(engine, "device", "cpu"),
        )
        log.info("loaded %s in %.1fs", name, seconds)
        engines[name] = engine
    return engines


def _documents(request: ExplainRequest) -> list[Document]:
    return [Document(text=d.text, title=d.title) for d in request.document_objects()]


def _check_tokens(engine: Any, request: ExplainRequest, limit: int) -> None:
    """The deployment's prompt cap (``TEXTGENSHAP_MAX_TOKENS``; 0 = only the model's own
    window, which ``open_session`` checks): over it, the job fails with ContextTooLong."""
    if not limit:
        return
    from worker.engine.errors import ContextTooLong

    tokens = int(engine.count_tokens(request.question, _documents(request)))
    if tokens > limit:
        raise ContextTooLong(tokens, limit)


def open_session(engine: Any, request: ExplainRequest, max_tokens: int) -> Any:
    """The job's session on ``engine``; raises ContextTooLong over ``max_tokens``."""
    _check_tokens(engine, request, max_tokens)
    return _open(engine, request, request.fast)


def exact_session(engine: Any, request: ExplainRequest) -> Callable[[], Any] | None:
    """For a fast-mode job, what opens the exact session its checks run on (the receipt
    stays exact, and the job reports fast mode's agreement with it); None otherwise."""
    return (lambda: _open(engine, request, False)) if request.fast else None


def _open(engine: Any, request: ExplainRequest, fast: bool) -> Any:
    return engine.open_session(
        request.question,
        _documents(request),
        masking=request.masking,
        max_new_tokens=request.max_new_tokens,
        fast=fast,
    )
