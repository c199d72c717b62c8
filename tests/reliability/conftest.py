"""Reliability tests reuse the service fixtures: the same app in embedded and Redis modes
(``make_stack``) and real-process clusters (``cluster``)."""

from __future__ import annotations

from tests.service.conftest import make_stack, mode, stack
from tests.service.test_e2e_processes import cluster

__all__ = ["cluster", "make_stack", "mode", "stack"]
