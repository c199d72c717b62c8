"""Load test: N asyncio clients submit jobs and poll them against a running gateway.

Loopback only, bounded in time (``--duration``, at most 600 s, plus ``--drain`` for the
jobs still running) and in count (``--max-jobs``). Each client submits one job, polls it
to a terminal status, and starts the next. Prints throughput, p50/p99 latency of submit
and poll requests, and the lost jobs: accepted (202) but never seen finished, or gone
(404) before finishing. Start the stack first, for example (see docs/reliability.md):

    textgenshap serve --redis redis://127.0.0.1:6379/0 &
    textgenshap worker --redis redis://127.0.0.1:6379/0 --model tiny-llama &  # x2
    python -m bench.load --clients 8 --duration 45 --model tiny-llama
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

import httpx

from service.auth import is_loopback

TERMINAL = {"succeeded", "failed", "cancelled"}
DOCUMENTS = [
    {"title": "France", "text": "Paris is the capital of France. It is large."},
    {"title": "Germany", "text": "Berlin is the capital of Germany. It is old."},
    "Rome is the capital of Italy. It has a long history.",
]


@dataclass
class Tally:
    """Everything the clients observed, shared by all of them (one event loop)."""

    submit_seconds: list[float] = field(default_factory=list)
    poll_seconds: list[float] = field(default_factory=list)
    outcomes: dict[str, str] = field(default_factory=dict)  # job id -> last status seen
    statuses: dict[int, int] = field(default_factory=dict)  # HTTP status -> count
    submitted: int = 0

    def count(self, status: int) -> None:
        self.statuses[status] = self.statuses.get(status, 0) + 1


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile in milliseconds (0 when there are no values)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return 1000 * ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def body(model: str | None, seed: int) -> dict[str, Any]:
    """A two-level exact explanation of three short documents (distinct per seed)."""
    request: dict[str, Any] = {
        "question": "What is the capital of France?",
        "documents": DOCUMENTS,
        "levels": ["document", "sentence"],
        "estimator": "exact",
        "budget": 64,
        "max_new_tokens": 4,
        "seed": seed,
    }
    return {**request, "model": model} if model else request


async def submit(client: httpx.AsyncClient, tally: Tally, request: dict[str, Any]) -> str | None:
    """POST /explain, retrying after Retry-After on 429/503; the job id, or None."""
    while True:
        start = time.perf_counter()
        response = await client.post("/explain", json=request)
        tally.submit_seconds.append(time.perf_counter() - start)
        tally.count(response.status_code)
        if response.status_code == 202:
            tally.submitted += 1
            return str(response.json()["job_id"])
        if response.status_code not in (429, 503):
            return None
        await asyncio.sleep(float(response.headers.get("retry-after", "1")))


async def follow(
    client: httpx.AsyncClient, tally: Tally, job_id: str, until: float, interval: float
) -> None:
    """Poll GET /jobs/{id} until terminal, gone (404: lost) or ``until``."""
    tally.outcomes[job_id] = "queued"
    while time.monotonic() < until:
        start = time.perf_counter()
        response = await client.get(f"/jobs/{job_id}")
        tally.poll_seconds.append(time.perf_counter() - start)
        tally.count(response.status_code)
        if response.status_code == 404:
            tally.outcomes[job_id] = "gone"
            return
        if response.status_code == 200:
            tally.outcomes[job_id] = response.json()["status"]
            if tally.outcomes[job_id] in TERMINAL:
                return
        await asyncio.sleep(interval)


async def client_loop(
    number: int, client: httpx.AsyncClient, tally: Tally, args: argparse.Namespace, stop: float
) -> None:
    """One simulated user: submit, follow to the end, repeat until time or count runs out."""
    seed = number * 1_000_000
    while time.monotonic() < stop and tally.submitted < args.max_jobs:
        seed += 1
        job_id = await submit(client, tally, body(args.model, seed))
        if job_id is not None:
            await follow(client, tally, job_id, stop + args.drain, args.poll_interval)


async def run(args: argparse.Namespace) -> tuple[Tally, float]:
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    tally = Tally()
    limits = httpx.Limits(max_connections=args.clients + 4)
    async with httpx.AsyncClient(
        base_url=args.url, headers=headers, timeout=30, limits=limits
    ) as client:
        start = time.monotonic()
        stop = start + args.duration
        await asyncio.gather(
            *(client_loop(i, client, tally, args, stop) for i in range(args.clients))
        )
        return tally, time.monotonic() - start


def summary(tally: Tally, wall: float, args: argparse.Namespace) -> dict[str, Any]:
    """The figures docs/reliability.md reports."""
    ends = list(tally.outcomes.values())
    succeeded = ends.count("succeeded")
    return {
        "clients": args.clients,
        "duration_s": round(wall, 1),
        "submitted": tally.submitted,
        "succeeded": succeeded,
        "failed": ends.count("failed"),
        "lost": sum(1 for s in ends if s not in TERMINAL),
        "throughput_jobs_per_s": round(succeeded / wall, 2) if wall else 0.0,
        "submit_ms": {"p50": round(percentile(tally.submit_seconds, 50), 1),
                      "p99": round(percentile(tally.submit_seconds, 99), 1)},
        "poll_ms": {"p50": round(percentile(tally.poll_seconds, 50), 1),
                    "p99": round(percentile(tally.poll_seconds, 99), 1)},
        "requests": len(tally.submit_seconds) + len(tally.poll_seconds),
        "http_statuses": dict(sorted(tally.statuses.items())),
    }  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="loopback gateway URL")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--duration", type=float, default=45.0, help="seconds of submitting")
    parser.add_argument("--drain", type=float, default=60.0, help="seconds to finish after")
    parser.add_argument("--max-jobs", type=int, default=2_000)
    parser.add_argument("--poll-interval", type=float, default=0.2)
    parser.add_argument("--model", default=None, help="default: the gateway's default model")
    parser.add_argument("--api-key", default=None)
    parser.add_argument("--json", action="store_true", help="print the summary as JSON only")


def check_bounds(args: argparse.Namespace) -> None:
    """Refuse anything but a bounded run against this machine."""
    host = urlparse(args.url).hostname or ""
    if not is_loopback(host):
        raise SystemExit(f"--url must be a loopback address (got {host!r}): no remote load")
    if not (0 < args.duration <= 600 and 0 <= args.drain <= 600):
        raise SystemExit("--duration must be in (0, 600] and --drain in [0, 600] seconds")
    if not (1 <= args.clients <= 256 and 1 <= args.max_jobs <= 100_000):
        raise SystemExit("--clients must be in [1, 256] and --max-jobs in [1, 100000]")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    check_bounds(args)
    tally, wall = asyncio.run(run(args))
    result = summary(tally, wall, args)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>22}: {value}")
    return 0 if result["lost"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
