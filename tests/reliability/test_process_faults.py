"""Faults with real processes and a real Redis, each bounded in time.

- SIGKILL the worker holding a job, again and again, while three workers share 20 jobs:
  every job succeeds, its result is stored exactly once (counted from the workers' own
  "stored" log lines and from the queue's finished counter), none is lost.
- Restart a private Redis (AOF on, its own port and directory) while jobs are queued and
  running: the gateway answers 503 with Retry-After while it is down and recovers by
  itself, the workers reconnect, and every job queued before the restart succeeds.
- A poison job that kills its worker process on every delivery (as a segfault would)
  fails with MaxDeliveriesExceeded after N deliveries; the other jobs succeed.

SIGTERM (finish or hand back) and SIGKILL of one job are in tests/service.
"""

from __future__ import annotations

import random
import re
import shutil
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tests.reliability.engines import CRASH
from tests.service.conftest import wait_until
from tests.service.engines import DELAY_ENV
from tests.service.payloads import check_result, explain_body
from tests.service.test_e2e_processes import (
    FAKE,
    Cluster,
    finished,
    free_port,
    submit,
    wait_job,
    wait_workers,
)

MARKER = "Zanzibar-7731"  # in every question: must never reach a log
STORED = re.compile(r"job ([0-9a-f]{32}): (succeeded|failed|cancelled)$")


def start_worker(cluster: Cluster, name: str, delay: float, **env: str) -> subprocess.Popen[bytes]:
    args = ["worker", "--redis", cluster.redis_url, "--model", FAKE, "--metrics-port", "0"]
    return cluster.spawn(name, args, **{DELAY_ENV: str(delay), **env})


def stored_outcomes(logs: Path) -> Counter[str]:
    """Outcomes the workers report as stored, per job id (a discarded one says so)."""
    counts: Counter[str] = Counter()
    for path in logs.glob("w*.log"):
        for line in path.read_text(errors="replace").splitlines():
            match = STORED.search(line)
            if match:
                counts[match.group(1)] += 1
    return counts


def holder_pid(client: redis.Redis, prefix: str, job_id: str) -> int | None:
    """The pid of the worker process whose lease the job is under (worker id is
    ``host-pid-slot``)."""
    worker = client.hget(f"{prefix}job:{job_id}", "worker")
    return int(worker.decode().rsplit("-", 2)[1]) if worker else None


def statuses(client: httpx.Client, jobs: list[str]) -> list[str]:
    return [client.get(f"/jobs/{job}").json()["status"] for job in jobs]


def bodies(n: int) -> list[dict[str, Any]]:
    return [
        explain_body(seed=i, question=f"What is the capital of France? {MARKER}") for i in range(n)
    ]  # noqa: E501


def assert_no_marker_in_logs(logs: Path) -> None:
    for path in logs.glob("*.log"):
        assert MARKER not in path.read_text(errors="replace"), path.name


def test_repeated_sigkill_under_load_loses_and_duplicates_nothing(
    cluster: Cluster, redis_url: str
) -> None:
    client = cluster.gateway()
    env = {"TEXTGENSHAP_MAX_DELIVERIES": "10"}  # kills are not the job's fault
    workers = {f"w{i}": start_worker(cluster, f"w{i}-0", 0.5, **env) for i in range(3)}
    wait_workers(client, "fake", 3)
    sent = bodies(20)
    jobs = [submit(client, body) for body in sent]
    store, rng, kills, hits = redis.Redis.from_url(redis_url), random.Random(8), 0, 0
    deadline = time.monotonic() + 50
    while set(statuses(client, jobs)) != {"succeeded"} and time.monotonic() < deadline:
        time.sleep(1.0)
        running = [j for j, s in zip(jobs, statuses(client, jobs), strict=True) if s == "running"]
        holders = {j: holder_pid(store, cluster.prefix, j) for j in running}
        victims = [name for name, proc in workers.items() if proc.pid in holders.values()]
        if kills < 6 and victims:  # kill a worker that holds a job, then replace it
            name = rng.choice(victims)
            held = [j for j, pid in holders.items() if pid == workers[name].pid]
            workers[name].send_signal(signal.SIGKILL)
            workers[name].wait(10)
            kills += 1
            hits += sum(s != "succeeded" for s in statuses(client, held))
            workers[name] = start_worker(cluster, f"{name}-{kills}", 0.5, **env)
    views = [client.get(f"/jobs/{job}").json() for job in jobs]
    assert [v["status"] for v in views] == ["succeeded"] * 20, [v["error"] for v in views]
    for view, body in zip(views, sent, strict=True):
        check_result(view["result"], body)
    assert kills == 6
    # A kill costs a delivery when the job was still unstored as the worker died: a job
    # can finish between reading its holder and the kill, so count the kills that hit.
    assert hits >= 1
    assert sum(v["deliveries"] for v in views) >= 20 + hits
    assert stored_outcomes(cluster.logs) == Counter(dict.fromkeys(jobs, 1))
    assert finished(client, "succeeded") == 20
    metrics = client.get("/metrics").text
    assert "textgenshap_queue_depth 0.0" in metrics
    assert "textgenshap_queue_pending 0.0" in metrics
    assert_no_marker_in_logs(cluster.logs)


class PrivateRedis:
    """A redis-server of our own (AOF on) that a test may stop and restart."""

    def __init__(self, directory: Path) -> None:
        self.port, self.dir = free_port(), directory
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = [
            shutil.which("redis-server") or "redis-server", "--port", str(self.port),
            "--bind", "127.0.0.1", "--dir", str(self.dir), "--appendonly", "yes",
            "--save", "", "--protected-mode", "yes",
        ]  # fmt: skip
        log = (self.dir / "redis.log").open("ab")
        self.proc = subprocess.Popen(command, stdout=log, stderr=log)
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5)

        def up() -> bool:
            try:
                return bool(client.ping())
            except redis.ConnectionError:
                return False

        wait_until(up, timeout=10, step=0.05)

    def stop(self) -> None:
        """SIGTERM: Redis writes its AOF and exits, like a restart by a supervisor."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(10)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    if server.proc is not None and server.proc.poll() is None:
        server.proc.kill()
        server.proc.wait(10)


def test_redis_restart_keeps_queued_jobs_and_everyone_recovers(
    private_redis: PrivateRedis, tmp_path: Path
) -> None:
    cluster = Cluster(private_redis.url, "restart:", tmp_path)
    try:
        client = cluster.gateway()
        for i in range(2):
            start_worker(cluster, f"w{i}", 0.4, TEXTGENSHAP_REDIS_TIMEOUT_SECONDS="0.5")
        wait_workers(client, "fake", 2)
        sent = bodies(8)
        jobs = [submit(client, body) for body in sent]
        wait_until(lambda: sorted(statuses(client, jobs)) == ["queued"] * 6 + ["running"] * 2)
        private_redis.stop()  # a job takes 1.2 s: none can finish in between
        down = client.post("/explain", json=sent[0])
        assert (down.status_code, down.headers["retry-after"]) == (503, "5")
        assert down.json()["detail"].startswith("Redis is unavailable")
        assert client.get(f"/jobs/{jobs[0]}").status_code == 503
        assert client.get("/readyz").status_code == 503
        assert client.get("/healthz").status_code == 200
        time.sleep(3)  # longer than a lease: workers keep failing to renew meanwhile
        private_redis.start()
        wait_until(lambda: client.get("/readyz").status_code == 200, timeout=20, step=0.2)
        later = submit(client, sent[0])  # the gateway recovered by itself
        views = [wait_job(client, job, timeout=40) for job in [*jobs, later]]
        assert [v["status"] for v in views] == ["succeeded"] * 9, [v["error"] for v in views]
        for view, body in zip(views, [*sent, sent[0]], strict=True):
            check_result(view["result"], body)
        assert finished(client, "succeeded") == 9
        assert stored_outcomes(cluster.logs) == Counter(dict.fromkeys([*jobs, later], 1))
        assert_no_marker_in_logs(cluster.logs)
    finally:
        cluster.stop()


def test_a_job_that_kills_its_worker_fails_after_max_deliveries(cluster: Cluster) -> None:
    client = cluster.gateway()
    args = ["worker", "--redis", cluster.redis_url, "--metrics-port", "0"]
    args += ["--model", "py:tests.reliability.engines:make_crashing_engine"]
    env = {"TEXTGENSHAP_MAX_DELIVERIES": "2"}
    workers = [cluster.spawn(f"w{i}-0", args, **env) for i in range(2)]
    wait_workers(client, "fake", 2)
    poison = submit(client, explain_body(question=f"What is the capital of France? {CRASH}"))
    healthy = [submit(client, body) for body in bodies(4)]
    restarts, deadline = 0, time.monotonic() + 45
    while client.get(f"/jobs/{poison}").json()["status"] != "failed":
        assert time.monotonic() < deadline, "the poison job never failed"
        for i, proc in enumerate(workers):
            if proc.poll() is not None:  # a supervisor restarting the dead worker
                restarts += 1
                workers[i] = cluster.spawn(f"w{i}-{restarts}", args, **env)
        time.sleep(0.2)
    view = client.get(f"/jobs/{poison}").json()
    assert view["error"] == {
        "type": "MaxDeliveriesExceeded",
        "message": "job was delivered 2 times without finishing (max_deliveries=2); "
        "the workers holding it stopped without reporting (killed or crashed)",
    }
    killed = [p for p in cluster.procs if p.poll() == -signal.SIGKILL]
    assert len(killed) == 2  # it killed a worker on each of its two deliveries, no more
    assert [wait_job(client, job)["status"] for job in healthy] == ["succeeded"] * 4
    assert finished(client, "failed") == 1
