"""Halving a batch on a real out-of-memory: the device itself refuses the full batch and
``split_on_oom`` gets every result, in order, from the halves.

tests/reliability/test_engine_oom.py raises a made-up ``torch.OutOfMemoryError`` on the
CPU; this makes the CUDA allocator raise it, which is what shows that ``is_oom`` recognises
the error the device really raises and that the memory freed after it lets the halves run.
"""

from __future__ import annotations

import pytest
import torch

from tests.cuda.device import requested_device
from worker.engine.batching.budget import is_oom, split_on_oom

pytestmark = pytest.mark.cuda

DEVICE = torch.device(requested_device())
ITEMS = 8
# Each item takes a sixth of the free memory: the full batch needs 4/3 of it (refused),
# each half 2/3 (fits, with a third left for whatever else allocates meanwhile).
SHARE = 6


def test_a_batch_the_device_cannot_hold_is_halved():
    if DEVICE.type != "cuda":
        pytest.skip(f"a real out-of-memory needs a CUDA device; {DEVICE} memory would swap")
    torch.cuda.empty_cache()
    free, _ = torch.cuda.mem_get_info(DEVICE)
    row = free // SHARE
    before = torch.cuda.memory_allocated(DEVICE)
    attempts: list[int] = []
    errors: list[BaseException] = []

    def run(batch: list[int]) -> list[int]:
        """Fill a (len(batch), row) byte block with each item's value and read each row's
        last byte back: memory proportional to the batch, really written."""
        attempts.append(len(batch))
        try:
            block = torch.empty((len(batch), row), dtype=torch.uint8, device=DEVICE)
        except torch.OutOfMemoryError as error:
            errors.append(error)
            raise
        block[:] = torch.tensor(batch, dtype=torch.uint8, device=DEVICE)[:, None]
        return [int(x) for x in block[:, -1].tolist()]

    batch = list(range(10, 10 + ITEMS))
    assert split_on_oom(run, batch) == batch  # complete and in order
    assert attempts == [ITEMS, ITEMS // 2, ITEMS // 2]  # refused once, then both halves
    assert len(errors) == 1
    assert isinstance(errors[0], torch.OutOfMemoryError)
    assert is_oom(errors[0])
    torch.cuda.empty_cache()
    assert torch.cuda.memory_allocated(DEVICE) == before  # nothing held on to
