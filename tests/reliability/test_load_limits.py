"""Limits under load: 200 concurrent connections against a live embedded gateway (loopback,
bounded in count and time) hold the body limit and the rate limit, with no 5xx and the
gateway's memory flat. Oversized bodies are refused from what is read, so 200 of them at
once cost the gateway no more than one."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator

import httpx
import psutil
import pytest

from service.auth import hash_key
from tests.reliability.conftest import live_gateway
from tests.service.payloads import explain_body

KEY = "load-key"
LIMIT = 256 * 1024  # bytes a body may have
CONNECTIONS = 200


@pytest.fixture(scope="module")
def limited_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """(base URL, pid) of an embedded gateway with a small body limit and the rate limit on."""
    settings = {
        "TEXTGENSHAP_API_KEYS": hash_key(KEY),
        "TEXTGENSHAP_MAX_BODY_BYTES": str(LIMIT),
        "TEXTGENSHAP_RATE_LIMIT_PER_MINUTE": "60",
        "TEXTGENSHAP_RATE_LIMIT_BURST": "20",
    }
    with live_gateway(tmp_path_factory.mktemp("load"), settings) as gateway:
        yield gateway


async def _burst(base: str, requests: list[dict]) -> Counter[int]:
    limits = httpx.Limits(max_connections=CONNECTIONS, max_keepalive_connections=0)
    headers = {"authorization": f"Bearer {KEY}", "content-type": "application/json"}
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as client:
        replies = await asyncio.gather(
            *(client.post("/explain", headers=headers, **r) for r in requests)
        )
    return Counter(r.status_code for r in replies)


def _rss(pid: int) -> int:
    return int(psutil.Process(pid).memory_info().rss)


def test_200_connections_hold_the_body_limit_and_the_rate_limit(
    limited_gateway: tuple[str, int],
) -> None:
    base, pid = limited_gateway
    big = b'{"question": "q", "documents": ["' + b"x" * (4 * LIMIT) + b'"]}'
    warm = asyncio.run(_burst(base, [{"content": big}] * 10))
    assert warm == {413: 10}
    before = _rss(pid)
    oversized = asyncio.run(_burst(base, [{"content": big}] * CONNECTIONS))
    grown = _rss(pid) - before
    assert oversized == {413: CONNECTIONS}
    # never a whole body per connection (200 x 1 MB = 200 MB): at most a limit's worth each
    assert grown < 64 * 1024 * 1024, f"gateway grew by {grown / 2**20:.0f} MB"
    submits = asyncio.run(_burst(base, [{"json": explain_body()}] * CONNECTIONS))
    assert set(submits) <= {202, 429}
    assert 15 <= submits[202] <= 25  # the burst of 20, give or take a token refilled
    assert submits[429] == CONNECTIONS - submits[202]
