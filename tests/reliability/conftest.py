"""Reliability tests reuse the service fixtures: the same app in embedded and Redis modes
(``make_stack``) and real-process clusters (``cluster``); ``gateway`` is a live embedded
``textgenshap serve`` process with the fake engine and API keys on."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from service.auth import hash_key
from tests.service.conftest import make_stack, mode, stack, wait_until
from tests.service.test_e2e_processes import cluster, free_port

__all__ = ["cluster", "gateway", "live_gateway", "make_stack", "mode", "stack"]
ROOT = Path(__file__).resolve().parents[2]
KEY = "reliability-key"  # the one API key of the ``gateway`` fixture


@contextlib.contextmanager
def live_gateway(logs: Path, settings: dict[str, str]) -> Iterator[tuple[str, int]]:
    """(base URL, pid) of an embedded ``textgenshap serve`` with the fake engine and the
    ``TEXTGENSHAP_`` environment ``settings``; killed afterwards."""
    port = free_port()
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", **settings}
    command = [sys.executable, "-m", "service.cli", "serve", "--port", str(port)]
    command += ["--model", "py:tests.fakes:make_fake_engine", "--log-level", "warning"]
    with (logs / "gateway.log").open("wb") as log:
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            return httpx.get(f"{base}/readyz").status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_until(ready, timeout=30, step=0.1)
        yield base, proc.pid
    finally:
        proc.kill()
        proc.wait(10)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of an embedded gateway serving the fake engine, killed afterwards."""
    settings = {
        "TEXTGENSHAP_API_KEYS": hash_key(KEY),
        "TEXTGENSHAP_RATE_LIMIT_PER_MINUTE": "0",  # fuzzers and load scripts are busy clients
        "TEXTGENSHAP_MAX_BUDGET": "64",
    }
    with live_gateway(tmp_path_factory.mktemp("gateway"), settings) as (base, _):
        yield base
