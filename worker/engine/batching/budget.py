"""Batch sizing from free memory, and halving a batch when the device runs out of it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import psutil
import torch

from worker.engine.batching.model_facts import MemoryFacts
from worker.engine.errors import EngineError

T = TypeVar("T")
R = TypeVar("R")

CPU_TOKENS = 2048  # on a CPU a bigger batch buys no throughput; smaller ones let the draft grow
# Rough machine balance: multiply-adds a device does in the time it moves one byte.
FLOPS_PER_BYTE = {"cpu": 20.0, "cuda": 100.0}
# A matrix product on a few rows, measured on this 2-core CPU: Gemma 3's output head
# multiplies at 52 GFLOP/s and streams its weights at 7.9 GB/s (85 ms per call).
HEAD_FLOPS_PER_BYTE = {"cpu": 6.6, "cuda": 100.0}
PASSES_PER_BATCH = 3  # a batch reads its slots in the prompt pass and a few decoding steps


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


def attention_costs(
    config: object, base: torch.nn.Module, dtype: torch.dtype, device: torch.device
) -> tuple[float, float]:
    """``(key_cost, slot_cost)`` for ``packing.split_rows``, in units of computing one token
    (the multiply-adds of the weight matrices): attending one query to one key (scores and
    values, every head and layer), and moving one cached slot's keys and values over a
    batch's passes (bytes times the device's multiply-adds per byte)."""
    layers = _setting(config, ("num_hidden_layers", "num_layers"), 12)
    heads = _setting(config, ("num_attention_heads", "num_heads"), 8)
    hidden = _setting(config, ("hidden_size", "d_model"), 512)
    head_dim = _setting(config, ("head_dim", "d_kv"), hidden // heads)
    weights = sum(
        p.numel() for name, p in base.named_parameters() if p.dim() == 2 and "embed" not in name
    )
    weights = max(weights, 1)
    balance = FLOPS_PER_BYTE.get(device.type, FLOPS_PER_BYTE["cuda"])
    moved = kv_bytes_per_token(config, dtype) * balance * PASSES_PER_BATCH
    return 2 * layers * heads * head_dim / weights, moved / weights


def head_read_rows(dtype: torch.dtype, device: torch.device) -> int:
    """Rows of a matrix product that cost as much as reading the matrix once: a weight is
    read once per call (its bytes times the device's multiply-adds per byte) and used for
    two flops per row. For the output head, whose product is taken on a few rows at a time."""
    balance = HEAD_FLOPS_PER_BYTE.get(device.type, HEAD_FLOPS_PER_BYTE["cuda"])
    return int(balance * torch.finfo(dtype).bits / 8 / 2)


def store_slots(engine: MemoryFacts) -> int:
    """Slots a job's prefix store may hold: an eighth of free memory (batches get a quarter)."""
    return max(0, free_bytes(engine.torch_device) // 8 // max(1, int(engine.kv_bytes)))


def _setting(config: object, names: tuple[str, ...], default: int) -> int:
    """The first of ``names`` the config sets (configs name the same thing differently)."""
    for name in names:
        value = getattr(config, name, None)
        if value:
            return int(value)
    return default


def token_budget(engine: MemoryFacts, context: int) -> int:
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


def single_coalition(run: Callable[[], R]) -> R:
    """``run()``, work that no smaller batch can replace (one coalition's pass, the job's
    full-context prompt): out of memory there is an :class:`EngineError` the job fails
    with, not a device error the worker would retry on the same device."""
    try:
        return run()
    except RuntimeError as error:
        if is_oom(error):
            raise EngineError("out of memory on a single coalition") from error
        raise


def split_on_oom(run: Callable[[list[T]], Sequence[Any]], batch: list[T]) -> list[Any]:
    """``run(batch)``; on out-of-memory, free the cache and run the two halves instead.
    Other errors propagate unchanged (the worker fails or retries the job)."""
    if len(batch) == 1:
        return list(single_coalition(lambda: run(batch)))
    try:
        return list(run(batch))
    except RuntimeError as error:
        if not is_oom(error):
            raise
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        half = len(batch) // 2
        return split_on_oom(run, batch[:half]) + split_on_oom(run, batch[half:])
