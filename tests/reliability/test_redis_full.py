"""A Redis at its ``maxmemory`` (noeviction) refusing writes: the gateway answers 503 with
Retry-After (not a plain-text 500), a heartbeat reports it as the store being unavailable
(the worker's heartbeat loop survives), and all recover once memory is freed. A private
redis-server on its own port, so the shared one never fills."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import redis
from fastapi.testclient import TestClient

from service.app import create_app
from service.contract.jobs import QueueUnavailable, WorkerInfo
from service.contract.settings import Settings
from service.queues.redis_queue import RedisQueue
from tests.service.payloads import explain_body

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="no redis-server")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def small_redis() -> Iterator[str]:
    port = _free_port()
    command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    command += ["--appendonly", "no", "--maxmemory", "3mb", "--maxmemory-policy", "noeviction"]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    for _ in range(100):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _fill(url: str) -> None:
    """Write until Redis refuses a write for lack of memory."""
    client = redis.Redis.from_url(url)
    for i in range(10_000):
        try:
            client.set(f"ballast:{i}", b"x" * 100_000)
        except redis.exceptions.OutOfMemoryError:
            return
    raise AssertionError("Redis never reached its maxmemory")


def test_a_full_redis_is_503_with_retry_after_and_recovers(small_redis: str) -> None:
    settings = Settings(redis_url=small_redis, retry_after_seconds=4)
    queue = RedisQueue(settings)
    client = TestClient(create_app(settings, queue))
    worker = WorkerInfo(worker_id="w1", models=["fake"], started_at=datetime.now(UTC))
    queue.heartbeat(worker)  # a live worker serves "fake"
    _fill(small_redis)
    refused = client.post("/explain", json=explain_body())
    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "4"
    assert refused.json() == {"detail": "Redis is out of memory; retry later"}
    with pytest.raises(QueueUnavailable):  # the heartbeat loop logs this and goes on
        queue.heartbeat(worker)
    redis.Redis.from_url(small_redis).delete(*[f"ballast:{i}" for i in range(10_000)])
    queue.heartbeat(worker)
    assert [w.worker_id for w in queue.workers()] == ["w1"]
    assert client.post("/explain", json=explain_body()).status_code == 202
