"""End to end with real processes: a ``textgenshap serve --redis`` gateway, ``textgenshap
worker`` processes and the real Redis. Covers the happy path at volume (tiny real model),
SIGKILL of a worker mid-job (the job still succeeds, exactly once) and SIGTERM (the
worker finishes or hands back its job, then exits)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from service.queues.redis_base import JOB_KEY
from tests.service.conftest import wait_until
from tests.service.engines import DELAY_ENV
from tests.service.payloads import check_result, explain_body

ROOT = Path(__file__).resolve().parents[2]
FAKE = "py:tests.service.engines:make_env_engine"
TERMINAL = ("succeeded", "failed", "cancelled")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Cluster:
    """Processes sharing one Redis key prefix; every process is killed at teardown."""

    redis_url: str
    prefix: str
    logs: Path
    port: int = field(default_factory=free_port)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def env(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "HF_HUB_OFFLINE": "1",
            "TEXTGENSHAP_KEY_PREFIX": self.prefix,
            "TEXTGENSHAP_LEASE_SECONDS": "2",
            "TEXTGENSHAP_HEARTBEAT_SECONDS": "0.5",
            "TEXTGENSHAP_DEFAULT_MODEL": "fake",
            **extra,
        }

    def spawn(self, name: str, args: list[str], **env: str) -> subprocess.Popen[bytes]:
        log = (self.logs / f"{name}.log").open("wb")
        command = [sys.executable, "-m", "service.cli", *args]
        proc = subprocess.Popen(command, cwd=ROOT, env=self.env(**env), stdout=log, stderr=log)
        self.procs.append(proc)
        return proc

    def gateway(self) -> httpx.Client:
        self.spawn("gateway", ["serve", "--redis", self.redis_url, "--port", str(self.port)])
        client = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=10)

        def up() -> bool:
            try:
                return client.get("/healthz").status_code == 200
            except httpx.TransportError:
                return False

        wait_until(up, timeout=30, step=0.1)
        return client

    def worker(
        self,
        name: str,
        model: str = FAKE,
        delay: float = 0.0,
        grace: float = 20.0,
        extra: tuple[str, ...] = (),
    ) -> subprocess.Popen[bytes]:
        args = ["worker", "--redis", self.redis_url, "--model", model, "--metrics-port", "0"]
        args += ["--grace", str(grace), *extra]
        return self.spawn(name, args, **{DELAY_ENV: str(delay)})

    def log(self, name: str) -> str:
        """A process's output, for assertion messages."""
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)


@pytest.fixture
def cluster(redis_url: str, key_prefix: str, tmp_path: Path) -> Iterator[Cluster]:
    cluster = Cluster(redis_url, key_prefix, tmp_path)
    yield cluster
    cluster.stop()


def wait_workers(client: httpx.Client, model: str, n: int, timeout: float = 60) -> None:
    def live() -> bool:
        models = client.get("/models").json()["models"]
        return any(m["name"] == model and m["workers"] == n for m in models)

    wait_until(live, timeout=timeout, step=0.1)


def wait_job(
    client: httpx.Client, job_id: str, statuses: tuple[str, ...] = TERMINAL, timeout: float = 60
) -> dict[str, Any]:  # noqa: E501
    view: dict[str, Any] = {}

    def reached() -> bool:
        nonlocal view
        view = client.get(f"/jobs/{job_id}").json()
        return view["status"] in statuses

    wait_until(reached, timeout=timeout, step=0.05)
    return view


def finished(client: httpx.Client, status: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(f'textgenshap_jobs_finished_total{{status="{status}"}}'):
            return float(line.split()[-1])
    return 0.0


def submit(client: httpx.Client, body: dict[str, Any]) -> str:
    response = client.post("/explain", json=body)
    assert response.status_code == 202, response.text
    return str(response.json()["job_id"])


@pytest.mark.slow
def test_twenty_jobs_on_two_tiny_llama_workers(cluster: Cluster) -> None:
    client = cluster.gateway()
    for i in range(2):
        cluster.worker(f"worker{i}", model="tiny-llama")
    wait_workers(client, "tiny-llama", 2, timeout=120)
    bodies = [
        explain_body(model="tiny-llama", max_new_tokens=4, seed=i, question=f"Question {i}?")
        for i in range(20)
    ]
    jobs = [submit(client, body) for body in bodies]
    views = [wait_job(client, job, timeout=120) for job in jobs]
    assert [v["status"] for v in views] == ["succeeded"] * 20, [v["error"] for v in views]
    for view, body in zip(views, bodies, strict=True):
        check_result(view["result"], body)
        assert view["result"]["stats"]["model"] == "tiny-llama"
        assert view["deliveries"] == 1
    assert finished(client, "succeeded") == 20


def test_sigkill_mid_job_still_succeeds_exactly_once(cluster: Cluster) -> None:
    client = cluster.gateway()
    workers = {cluster.worker(f"worker{i}", delay=0.5).pid: i for i in range(2)}
    wait_workers(client, "fake", 2)
    body = explain_body()
    job_id = submit(client, body)
    wait_job(client, job_id, ("running",))
    holder = holder_pid(cluster, job_id)
    victim = cluster.procs[workers[holder] + 1]  # procs[0] is the gateway
    victim.send_signal(signal.SIGKILL)
    victim.wait(10)
    view = wait_job(client, job_id)
    assert (view["status"], view["deliveries"]) == ("succeeded", 2)
    check_result(view["result"], body)
    assert holder_pid(cluster, job_id) != holder
    time.sleep(0.5)
    assert finished(client, "succeeded") == 1
    assert client.get(f"/jobs/{job_id}").json()["result"] == view["result"]


def holder_pid(cluster: Cluster, job_id: str) -> int:
    """Pid of the worker holding the job (consumer names are host-pid-slot)."""
    client = redis.Redis.from_url(cluster.redis_url, decode_responses=True)
    consumer = client.hget(cluster.prefix + JOB_KEY.format(job_id=job_id), "worker")
    client.close()
    return int(str(consumer).rsplit("-", 2)[1])


def test_sigterm_finishes_the_running_job_then_exits(cluster: Cluster) -> None:
    client = cluster.gateway()
    worker = cluster.worker("graceful", delay=0.3, grace=30)
    wait_workers(client, "fake", 1)
    job_id = submit(client, explain_body())
    wait_job(client, job_id, ("running",))
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(30) == 0, cluster.log("graceful")
    view = client.get(f"/jobs/{job_id}").json()
    assert (view["status"], view["deliveries"]) == ("succeeded", 1), (view, cluster.log("graceful"))
    models = client.get("/models").json()["models"]
    assert models == [], models  # unregistered on the way out


def test_sigterm_past_its_grace_hands_the_job_back(cluster: Cluster) -> None:
    client = cluster.gateway()
    worker = cluster.worker("impatient", delay=1.0, grace=0)
    wait_workers(client, "fake", 1)
    job_id = submit(client, explain_body())
    wait_job(client, job_id, ("running",))
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(30) == 0, cluster.log("impatient")
    view = client.get(f"/jobs/{job_id}").json()
    assert view["status"] == "queued", (view, cluster.log("impatient"))
    cluster.worker("next", delay=0.0)
    view = wait_job(client, job_id)
    assert (view["status"], view["deliveries"]) == ("succeeded", 1)


def test_embedded_serve_is_gateway_and_worker_in_one_process(cluster: Cluster) -> None:
    env = {k: v for k, v in cluster.env().items() if k != "TEXTGENSHAP_REDIS_URL"}
    args = ["serve", "--port", str(cluster.port), "--model", FAKE]
    proc = cluster.spawn("embedded", args, **env)
    client = httpx.Client(base_url=f"http://127.0.0.1:{cluster.port}", timeout=10)

    def ready() -> bool:
        try:
            return client.get("/readyz").status_code == 200
        except httpx.TransportError:
            return False

    wait_until(ready, timeout=30, step=0.1)
    assert client.get("/models").json() == {
        "default": "fake",
        "models": [{"name": "fake", "workers": 1}],
    }
    body = explain_body(model=None)
    view = wait_job(client, submit(client, body))
    assert view["status"] == "succeeded"
    check_result(view["result"], body)
    metrics = client.get("/metrics").text
    assert 'textgenshap_jobs_finished_total{status="succeeded"} 1.0' in metrics
    assert 'textgenshap_worker_jobs_total{status="succeeded"} 1.0' in metrics
    labels = 'attention_backend="fake",device="cpu",model="fake",worker="embedded"'
    assert f"textgenshap_worker_info{{{labels}}} 1.0" in metrics
    proc.send_signal(signal.SIGTERM)
    # uvicorn shuts down gracefully, then re-raises the signal it caught
    assert proc.wait(30) in (0, -signal.SIGTERM)
    assert "embedded worker stopped" in (cluster.logs / "embedded.log").read_text()


def test_one_worker_process_runs_concurrency_jobs_at_once(cluster: Cluster) -> None:
    client = cluster.gateway()
    cluster.worker("double", delay=0.3, extra=("--concurrency", "2"))
    wait_workers(client, "fake", 2)  # one slot per consumer
    jobs = [submit(client, explain_body(seed=i)) for i in range(2)]

    def both_running() -> bool:
        return all(client.get(f"/jobs/{j}").json()["status"] == "running" for j in jobs)

    wait_until(both_running, timeout=30, step=0.05)
    assert [wait_job(client, j)["status"] for j in jobs] == ["succeeded", "succeeded"]
