"""Halving a batch on out-of-memory."""

from __future__ import annotations

import pytest
import torch

from worker.engine.errors import EngineError
from worker.engine.memory import split_on_oom


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
