"""Fixtures of the viewer tests: a sample explanation, and a live gateway on a free port.

The gateway is the real app (``create_app``) over the in-process queue with the real
embedded worker, serving :mod:`tests.viewer.nq_fake` as ``fake-nq``, run by uvicorn in
a thread so that the client and the browser talk HTTP to it; ``keyed_gateway`` is the
same with API keys on.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

import service.viewer
from service.app import create_app
from service.auth import hash_key
from service.contract.results import ExplainResult
from service.contract.schemas import ExplainRequest
from service.contract.settings import Settings
from service.embedded import EmbeddedWorker
from service.queues.memory_queue import MemoryQueue
from tests.viewer import sample

ENGINE_SPEC = "py:tests.viewer.nq_fake:make_nq_fake_engine"
MODEL = "fake-nq"
API_KEY = "viewer-test-key"  # the one key of ``keyed_gateway``


@pytest.fixture
def sample_request() -> ExplainRequest:
    return sample.sample_request()


@pytest.fixture
def sample_result() -> ExplainResult:
    return sample.sample_result()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def with_viewer(app: FastAPI) -> FastAPI:
    """The app with the viewer router, unless the gateway already includes it."""
    paths = {getattr(route, "path", None) for route in app.routes}
    if "/examples" not in paths:
        app.include_router(service.viewer.router)
    return app


def wait_ready(base_url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base_url}/readyz", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"gateway at {base_url} not ready after {timeout} s")


@contextlib.contextmanager
def serve(settings: Settings) -> Iterator[str]:
    """Base URL of a live embedded gateway with ``settings``, stopped afterwards."""
    registry = CollectorRegistry()
    queue = MemoryQueue(settings)
    worker = EmbeddedWorker(settings, queue, registry)
    app = with_viewer(create_app(settings, queue, registry))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="viewer-gateway", daemon=True)
    worker.start()
    thread.start()
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base_url)
        yield base_url
    finally:
        server.should_exit = True
        thread.join(10)
        worker.stop(0.0)


@pytest.fixture(scope="session")
def gateway() -> Iterator[str]:
    """Base URL of a live embedded gateway serving ``fake-nq``, without API keys."""
    with serve(Settings(default_model=ENGINE_SPEC, max_budget=4096)) as base_url:
        yield base_url


@pytest.fixture(scope="session")
def keyed_gateway() -> Iterator[str]:
    """The same gateway with API keys on: :data:`API_KEY` is its one key."""
    settings = Settings(default_model=ENGINE_SPEC, max_budget=4096, api_keys=hash_key(API_KEY))
    with serve(settings) as base_url:
        yield base_url
