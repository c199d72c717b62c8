"""Service fixtures: the same app over the in-process queue ("embedded") and over Redis.

``stack`` is parametrized over both modes, so every API test runs twice. Workers are
in-process threads running the real worker loop over fake engines (fast); the
end-to-end tests start real processes instead.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from service.app import create_app
from service.contract.jobs import JobQueue
from service.contract.settings import Settings
from service.queues.memory_queue import MemoryQueue
from service.queues.redis_queue import RedisQueue
from worker.loop import Worker
from worker.metrics import WorkerMetrics

MODES = ("embedded", "redis")
TERMINAL = ("succeeded", "failed", "cancelled")
FAST = {"lease_seconds": 2.0, "heartbeat_seconds": 0.5, "retry_after_seconds": 7}


@dataclass
class Stack:
    """A gateway (TestClient) and its queue, plus worker threads started on demand."""

    mode: str
    settings: Settings
    queue: JobQueue
    client: TestClient
    registry: CollectorRegistry
    workers: list[tuple[Worker, threading.Thread]] = field(default_factory=list)
    worker_metrics: WorkerMetrics | None = None

    def start_worker(self, engine: Any, worker_id: str | None = None) -> Worker:
        """A worker thread serving ``engine`` under its ``name``; waits for its heartbeat."""
        if self.worker_metrics is None:  # one set per registry, shared like --concurrency
            self.worker_metrics = WorkerMetrics(self.registry, "test")
        metrics = self.worker_metrics
        worker = Worker(
            self.queue, {engine.name: engine}, self.settings, metrics, worker_id, poll_seconds=0.1
        )
        thread = threading.Thread(target=worker.serve, daemon=True)
        thread.start()
        self.workers.append((worker, thread))
        wait_until(lambda: any(w.worker_id == worker.worker_id for w in self.queue.workers()))
        return worker

    def submit(self, body: dict[str, Any], **headers: str) -> str:
        response = self.client.post("/explain", json=body, headers=headers)
        assert response.status_code == 202, response.text
        return str(response.json()["job_id"])

    def wait(
        self, job_id: str, statuses: tuple[str, ...] = TERMINAL, timeout: float = 20.0
    ) -> dict[str, Any]:  # noqa: E501
        """Poll ``GET /jobs/{id}`` until its status is one of ``statuses``."""
        view: dict[str, Any] = {}

        def reached() -> bool:
            nonlocal view
            view = self.client.get(f"/jobs/{job_id}").json()
            return view.get("status") in statuses

        wait_until(reached, timeout)
        return view

    def stop_workers(self) -> None:
        for worker, _ in self.workers:
            worker.stop(0.0)
        for _, thread in self.workers:
            thread.join(10)
        self.workers.clear()


def wait_until(condition: Callable[[], bool], timeout: float = 10.0, step: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(step)


StackFactory = Callable[..., Stack]


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_stack(mode: str, request: pytest.FixtureRequest) -> Iterator[StackFactory]:
    """Build a Stack in the current mode with settings overrides."""
    stacks: list[Stack] = []
    if mode == "redis":  # set up first, so its keys are deleted after the workers stop
        request.getfixturevalue("key_prefix")

    def build(**overrides: Any) -> Stack:
        values: dict[str, Any] = {**FAST, "default_model": "fake", **overrides}
        if mode == "redis":
            values["redis_url"] = request.getfixturevalue("redis_url")
            values["key_prefix"] = request.getfixturevalue("key_prefix")
        settings = Settings(**values)
        queue: JobQueue = RedisQueue(settings) if mode == "redis" else MemoryQueue(settings)
        registry = CollectorRegistry()
        client = TestClient(create_app(settings, queue, registry))
        stacks.append(Stack(mode, settings, queue, client, registry))
        return stacks[-1]

    yield build
    for stack in stacks:
        stack.stop_workers()
        stack.client.close()
        stack.queue.close()


@pytest.fixture
def stack(make_stack: StackFactory) -> Stack:
    return make_stack()
