"""A gateway, two workers and a real Prometheus as local subprocesses, for the live
observability test. The gateway runs as in its image: on 0.0.0.0 with API keys on (and
torch unimportable). Prometheus gets the shipped prometheus.yml with only what a laptop
needs changed: 1 s intervals, local targets instead of Docker names and DNS, and the
shipped alert rules by absolute path. Everything listens on 127.0.0.1 and is stopped,
and the Redis keys under the test's prefix deleted, when the context ends.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import redis
import yaml
from ops_assets import ALERT_RULES, PROMETHEUS_CONFIG, ROOT, load_yaml, require_tool

from service.auth import hash_key

API_KEY = "ops-live-stack-key"  # the gateway's one API key; Prometheus scrapes without it
FAKE_ENGINES = ("py:tests.fakes:make_fake_engine", "py:tests.fakes:make_raising_engine")
STARTUP_SECONDS = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = STARTUP_SECONDS) -> None:
    """Until ``url`` answers 200; fails early with the process's log if it exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{proc.args!r} exited with {proc.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise AssertionError(f"{url} not ready after {timeout}s")


def local_prometheus_config(jobs: dict[str, list[str]]) -> dict[str, Any]:
    """The shipped config with fast intervals and ``jobs`` (name -> local targets)."""
    config = load_yaml(PROMETHEUS_CONFIG)
    shipped = {job["job_name"] for job in config["scrape_configs"]}
    assert shipped == set(jobs), f"shipped scrape jobs {shipped} changed: update the test"
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    config["rule_files"] = [str(ALERT_RULES)]
    for job in config["scrape_configs"]:
        job.pop("dns_sd_configs", None)
        job["static_configs"] = [{"targets": jobs[job["job_name"]]}]
    return config


GPU_STACK = ("torch", "transformers", "flash_attn")


def block_gpu_stack(where: Path) -> Path:
    """A directory that, first on PYTHONPATH, makes the GPU stack fail to import."""
    blocker = where / "no-gpu-stack"
    for name in GPU_STACK:
        package = blocker / name
        package.mkdir(parents=True, exist_ok=True)
        (package / "__init__.py").write_text(
            f"raise ImportError('{name} is not installed in the gateway image')\n"
        )
    return blocker


class LiveStack:
    """Handles on the running processes and the Prometheus HTTP API."""

    def __init__(self, redis_url: str, prefix: str, storage: Path) -> None:
        self.redis_url, self.prefix, self.storage = redis_url, prefix, storage
        self.gateway_port, self.prometheus_port = free_port(), free_port()
        self.worker_ports = [free_port() for _ in FAKE_ENGINES]
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs = storage.parent / "logs"
        self.logs.mkdir(exist_ok=True)
        self.outcomes: dict[str, str] = {}
        self.workers_up_at = 0.0

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    @property
    def prometheus_url(self) -> str:
        return f"http://127.0.0.1:{self.prometheus_port}"

    @property
    def metrics_urls(self) -> list[str]:
        workers = [f"http://127.0.0.1:{port}/metrics" for port in self.worker_ports]
        return [f"{self.gateway_url}/metrics", *workers]

    def _env(self) -> dict[str, str]:
        return {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "HF_HUB_OFFLINE": "1",
            "TEXTGENSHAP_KEY_PREFIX": self.prefix,
            "TEXTGENSHAP_DEFAULT_MODEL": "fake",
            "TEXTGENSHAP_QUEUE_MAX": "2",
            "TEXTGENSHAP_MAX_DELIVERIES": "1",
            "TEXTGENSHAP_HEARTBEAT_SECONDS": "0.5",
        }

    def _spawn(
        self, name: str, argv: list[str], env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        log = (self.logs / f"{name}.log").open("wb")
        proc = subprocess.Popen(
            argv, cwd=ROOT, env=env or self._env(), stdout=log, stderr=subprocess.STDOUT
        )
        self.procs.append(proc)
        return proc

    def start_prometheus(self) -> None:
        port = self.prometheus_port
        jobs = {
            "textgenshap-gateway": [f"127.0.0.1:{self.gateway_port}"],
            "textgenshap-worker": [f"127.0.0.1:{p}" for p in self.worker_ports],
            "prometheus": [f"127.0.0.1:{port}"],
        }
        config = self.storage.parent / "prometheus.yml"
        config.write_text(yaml.safe_dump(local_prometheus_config(jobs)))
        proc = self._spawn("prometheus", [
            require_tool("prometheus"),
            f"--config.file={config}",
            f"--storage.tsdb.path={self.storage}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ])  # fmt: skip
        wait_http(f"{self.prometheus_url}/-/ready", proc)

    @property
    def gateway_env(self) -> dict[str, str]:
        """As in the gateway image: no torch (made unimportable), and API keys on."""
        return {
            **self._env(),
            "PYTHONPATH": f"{block_gpu_stack(self.storage.parent)}:{ROOT}",
            "TEXTGENSHAP_API_KEYS": hash_key(API_KEY),
        }

    def start_gateway(self) -> None:
        """On 0.0.0.0 like the image's CMD, which only starts because keys are set."""
        proc = self._spawn("gateway", [
            sys.executable, "-m", "service.cli", "serve", "--redis", self.redis_url,
            "--host", "0.0.0.0", "--port", str(self.gateway_port), "--log-level", "warning",
        ], env=self.gateway_env)  # fmt: skip
        wait_http(f"{self.gateway_url}/healthz", proc)

    def start_workers(self) -> None:
        for engine, port in zip(FAKE_ENGINES, self.worker_ports, strict=True):
            proc = self._spawn(f"worker-{port}", [
                sys.executable, "-m", "service.cli", "worker", "--redis", self.redis_url,
                "--model", engine, "--metrics-port", str(port), "--metrics-host", "127.0.0.1",
            ])  # fmt: skip
            wait_http(f"http://127.0.0.1:{port}/metrics", proc)

    def prometheus_api(self, path: str, **params: object) -> Any:
        """``data`` of a Prometheus HTTP API answer; fails on any API error."""
        response = httpx.get(f"{self.prometheus_url}/api/v1/{path}", params=params, timeout=10)
        body = response.json()
        assert body["status"] == "success", (path, params, body)
        return body["data"]

    def instant_by(self, expr: str, label: str) -> dict[str, float]:
        """An instant query's values keyed by one label."""
        result = self.prometheus_api("query", query=expr)["result"]
        return {s["metric"].get(label, ""): float(s["value"][1]) for s in result}

    def wait_scraped(self, expr: str, expected: float, timeout: float = 20.0) -> None:
        """Until Prometheus has scraped what ``expr`` sums to ``expected`` (the last job)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = self.prometheus_api("query", query=expr)["result"]
            if result and float(result[0]["value"][1]) == expected:
                self.workers_up_at = time.time()
                time.sleep(3.0)  # a few more scrapes, so rate() sees the last increments
                return
            time.sleep(0.2)
        raise AssertionError(f"{expr} did not reach {expected} in Prometheus in {timeout}s")

    def wait_rules_evaluated(self, timeout: float = 10.0) -> None:
        """Until every rule was evaluated after the workers were up (not at start-up)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            (group,) = self.prometheus_api("rules")["groups"]
            if all(_epoch(r["lastEvaluation"]) > self.workers_up_at for r in group["rules"]):
                return
            time.sleep(0.2)
        raise AssertionError(f"alert rules not evaluated within {timeout}s")

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def delete_keys(self) -> None:
        client = redis.Redis.from_url(self.redis_url)
        try:
            keys = list(client.scan_iter(match=f"{self.prefix}*", count=1000))
            if keys:
                client.delete(*keys)
        finally:
            client.close()


def _epoch(rfc3339: str) -> float:
    """Prometheus timestamps carry nanoseconds; datetime takes microseconds."""
    head, _, frac = rfc3339.rstrip("Z").partition(".")
    return datetime.fromisoformat(f"{head}.{(frac + '000000')[:6]}+00:00").timestamp()


@contextlib.contextmanager
def start_stack(redis_url: str, prefix: str, storage: Path) -> Iterator[LiveStack]:
    """Prometheus and the gateway running (workers start on request); all stopped after."""
    stack = LiveStack(redis_url, prefix, storage)
    try:
        stack.start_prometheus()
        stack.start_gateway()
        yield stack
    finally:
        stack.stop()
        stack.delete_keys()
