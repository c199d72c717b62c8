"""Fixtures shared by every test directory: a real Redis under a private key prefix.

Tests never FLUSHALL: each one gets its own prefix and deletes exactly its own keys.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

REDIS_URL = os.environ.get("TEXTGENSHAP_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def delete_prefix(url: str, prefix: str) -> None:
    """Remove every key under ``prefix`` (and nothing else)."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip ``cuda``-marked tests where no CUDA device is, with a reason ``-ra`` shows (CI
    here has none; ``make gpu-check`` runs them on a GPU). torch is imported only when such
    a test was collected; ``TEXTGENSHAP_TEST_DEVICE=cpu`` runs them on the CPU instead."""
    marked = [item for item in items if item.get_closest_marker("cuda")]
    if not marked:
        return
    from tests.cuda.device import missing_cuda_reason

    reason = missing_cuda_reason()
    if reason:
        for item in marked:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The test Redis; a test needing it fails (not skips) when it is down."""
    import redis

    redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    return REDIS_URL


@pytest.fixture
def key_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix owned by this test; its keys are deleted afterwards."""
    prefix = f"test-{uuid.uuid4().hex[:12]}:"
    yield prefix
    delete_prefix(redis_url, prefix)
