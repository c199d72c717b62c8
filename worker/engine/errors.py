"""Engine errors: typed so the worker can store ``{"type", "message"}`` for a failed job."""

from __future__ import annotations


class EngineError(Exception):
    """Base class of everything the engine raises on purpose."""


class ModelNotFound(EngineError):
    """A model name is neither registered, nor a local path, nor a loadable factory."""


class ContextTooLong(EngineError):
    """The full-context prompt does not fit the model's context window."""

    def __init__(self, tokens: int, limit: int) -> None:
        super().__init__(
            f"the prompt needs {tokens} tokens but the model accepts at most {limit}; "
            "send fewer or shorter documents"
        )
        self.tokens = tokens
        self.limit = limit


class FastModeUnsupported(EngineError):
    """Fast mode was asked of a model that has none (it is decoder-only)."""
