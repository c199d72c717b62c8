"""Which device the CUDA tests run on, and why they would not run here.

``TEXTGENSHAP_TEST_DEVICE`` (default ``cuda``) exists so that a developer without a GPU
can dry-run these tests' logic on a CPU (``TEXTGENSHAP_TEST_DEVICE=cpu``): the skip hook
in ``tests/conftest.py`` then lets them run, and only the checks that cannot hold off a
GPU (the FlashAttention kernel, a real out-of-memory) skip themselves, each with its own
reason. torch is imported only when a ``cuda``-marked test was collected.
"""

from __future__ import annotations

import os

ENV = "TEXTGENSHAP_TEST_DEVICE"
COALITIONS_ENV = "TEXTGENSHAP_TEST_COALITIONS"
SKIP_REASON = "needs a CUDA device (make gpu-check runs these on a GPU machine)"


def requested_device() -> str:
    """The device the ``cuda`` tests load their models on (``cuda`` unless overridden)."""
    return os.environ.get(ENV, "").strip() or "cuda"


def coalitions(default: int) -> int:
    """Random coalitions per real-model check: ``default`` on a GPU; a CPU dry run sets
    ``TEXTGENSHAP_TEST_COALITIONS`` low, since there each reference ``generate`` is slow."""
    return int(os.environ.get(COALITIONS_ENV, "").strip() or default)


def missing_cuda_reason() -> str | None:
    """Why ``cuda`` tests must be skipped here, or None when they can run: the requested
    device is CUDA and torch sees one, or the requested device is not CUDA (a dry run)."""
    if not requested_device().startswith("cuda"):
        return None
    import torch

    return None if torch.cuda.is_available() else SKIP_REASON
