"""Freed heap pages go back to the system between jobs (glibc's malloc_trim)."""

import platform

import numpy as np
import pytest

from worker.engine import heap


def _resident_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * 4096


@pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only"
)
def test_freed_chunks_below_the_mmap_threshold_are_handed_back() -> None:
    """Many 64 KB arrays (below glibc's mmap threshold, so they live in the heap) are freed
    all but the last: glibc keeps their pages, the trim returns them."""
    assert heap._malloc_trim() is not None
    heap.release_free_memory()
    arrays = [np.ones(8192) for _ in range(4096)]  # 256 MB in 64 KB chunks
    keep = arrays[-1]
    del arrays
    before = _resident_bytes()
    assert heap.release_free_memory() is True
    after = _resident_bytes()
    assert before - after > 128 * 2**20
    assert keep.sum() == 8192


def test_release_is_a_no_op_without_malloc_trim(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(heap, "_malloc_trim", lambda: None)
    assert heap.release_free_memory() is False
