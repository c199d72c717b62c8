"""Batch sizing from free memory, and halving a batch when the device runs out of it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import psutil
import torch

from worker.engine.errors import EngineError

T = TypeVar("T")

CPU_TOKENS = 2048  # on a CPU a bigger batch buys no throughput; smaller ones let the draft grow


def free_bytes(device: torch.device) -> int:
    """Free memory on ``device`` (CUDA's allocator view, or the host's available RAM)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    return int(psutil.virtual_memory().available)


def token_budget(engine: Any, context: int) -> int:
    """Token positions per batched pass: KV for ``context`` slots per row plus activations
    must fit in a quarter of free memory; on CPU also capped at ``CPU_TOKENS``."""
    device = engine.torch_device
    per_row = max(1, engine.kv_bytes * context + 4 * context * context)
    rows = max(1, free_bytes(device) // 4 // per_row)
    budget = rows * context
    return int(budget if device.type == "cuda" else min(budget, CPU_TOKENS))


def is_oom(error: BaseException) -> bool:
    """Out of memory on any device: CUDA raises ``torch.OutOfMemoryError``, other backends
    (MPS, XPU, older builds) a ``RuntimeError`` saying "out of memory". Anything else (a
    device-side assert, an illegal access) is not recoverable by a smaller batch."""
    if isinstance(error, torch.OutOfMemoryError):
        return True
    return isinstance(error, RuntimeError) and "out of memory" in str(error).lower()


def split_on_oom(run: Callable[[list[T]], Sequence[Any]], batch: list[T]) -> list[Any]:
    """``run(batch)``; on out-of-memory, free the cache and run the two halves instead.
    Other errors propagate unchanged (the worker fails or retries the job)."""
    try:
        return list(run(batch))
    except RuntimeError as error:
        if not is_oom(error):
            raise
        if len(batch) == 1:
            raise EngineError("out of memory on a single coalition") from error
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        half = len(batch) // 2
        return split_on_oom(run, batch[:half]) + split_on_oom(run, batch[half:])
