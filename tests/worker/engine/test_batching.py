"""Batch sizing from free memory, and halving a batch on out-of-memory."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from worker.engine.batching import budget as memory
from worker.engine.batching.budget import kv_bytes_per_token, split_on_oom
from worker.engine.errors import EngineError


def test_out_of_memory_halves_the_batch_until_it_fits():
    calls: list[list[int]] = []

    def run(batch: list[int]) -> list[int]:
        calls.append(batch)
        if len(batch) > 2:
            raise torch.OutOfMemoryError("simulated")
        return [x * 10 for x in batch]

    assert split_on_oom(run, [1, 2, 3, 4, 5]) == [10, 20, 30, 40, 50]
    assert calls == [[1, 2, 3, 4, 5], [1, 2], [3, 4, 5], [3], [4, 5]]


def test_a_single_coalition_out_of_memory_is_an_engine_error():
    def run(batch: list[int]) -> list[int]:
        raise torch.OutOfMemoryError("simulated")

    with pytest.raises(EngineError, match="out of memory on a single coalition"):
        split_on_oom(run, [1])


def test_kv_bytes_per_token_reads_decoder_only_and_t5_configs():
    llama = SimpleNamespace(
        num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3, hidden_size=576
    )
    # SmolLM2-135M: 30 layers x 3 KV heads x 64 dims x (K and V) x 4 bytes
    assert kv_bytes_per_token(llama, torch.float32) == 2 * 30 * 3 * 64 * 4
    t5 = SimpleNamespace(num_layers=6, num_decoder_layers=4, num_heads=6, d_kv=64, d_model=512)
    # the decoder's cross-attention cache: decoder layers, not encoder layers
    assert kv_bytes_per_token(t5, torch.bfloat16) == 2 * 4 * 6 * 64 * 2


def test_token_budget_is_capped_on_cpu_and_follows_free_memory_on_cuda(monkeypatch):
    engine = SimpleNamespace(torch_device=torch.device("cpu"), kv_bytes=1000)
    monkeypatch.setattr(memory, "free_bytes", lambda device: 10**12)
    assert memory.token_budget(engine, 100) == memory.CPU_TOKENS
    engine.torch_device = torch.device("cuda")
    # a quarter of 1 TB over (100 x 1000 + 4 x 100^2) bytes per row = 1,785,714 rows
    assert memory.token_budget(engine, 100) == 1_785_714 * 100
    monkeypatch.setattr(memory, "free_bytes", lambda device: 0)
    assert memory.token_budget(engine, 100) == 100  # always at least one row
