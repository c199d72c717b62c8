"""``py:module:attr`` model specs: a zero-argument factory returning an engine (test
engines, custom engines). The one parser and loader of such specs, for the registry, the
worker's ``--model`` and the evaluation's ``--model`` alike; it imports no torch, so a
duck-typed test engine loads without it."""

from __future__ import annotations

import importlib
from typing import Any

from worker.engine.errors import EngineError, ModelNotFound

PREFIX = "py:"
ENGINE_ATTRIBUTES = ("open_session", "count_tokens", "name")


def is_factory(spec: str) -> bool:
    return spec.startswith(PREFIX)


def load_factory(spec: str) -> Any:
    """The engine the factory ``spec`` names returns; ``ModelNotFound`` when the spec does
    not name a loadable factory, ``EngineError`` when what it returns is no engine."""
    try:
        module_name, attr = spec.removeprefix(PREFIX).split(":", 1)
        factory = getattr(importlib.import_module(module_name), attr)
    except (ValueError, ImportError, AttributeError) as error:
        raise ModelNotFound(f"{spec!r} is not a loadable py:module:attr factory") from error
    engine = factory()
    if not all(hasattr(engine, a) for a in ENGINE_ATTRIBUTES):
        raise EngineError(f"{spec} returned {type(engine).__name__}, which is not an engine")
    return engine
