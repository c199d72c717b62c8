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


def kv_bytes_per_token(config: object, dtype: torch.dtype) -> int:
    """Bytes of keys and values one token position adds to the cache: the self-attention
    cache of a decoder-only model, the decoder's cross-attention cache of an encoder-decoder
    (T5 names: ``num_decoder_layers``, ``num_heads``, ``d_kv``)."""
    layers = _setting(config, ("num_decoder_layers", "num_hidden_layers", "num_layers"), 12)
    query_heads = _setting(config, ("num_attention_heads", "num_heads"), 8)
    heads = _setting(config, ("num_key_value_heads",), query_heads)
    hidden = _setting(config, ("hidden_size", "d_model"), 512)
    head_dim = _setting(config, ("head_dim", "d_kv"), hidden // query_heads)
    return 2 * layers * heads * head_dim * torch.finfo(dtype).bits // 8


def _setting(config: object, names: tuple[str, ...], default: int) -> int:
    """The first of ``names`` the config sets (configs name the same thing differently)."""
    for name in names:
        value = getattr(config, name, None)
        if value:
            return int(value)
    return default


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
