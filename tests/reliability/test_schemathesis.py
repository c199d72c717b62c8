"""schemathesis against the published ``openapi.yaml`` on a running gateway (a real
``textgenshap serve`` process, embedded mode, fake engine, API keys on): for generated
valid and invalid requests, no 5xx, and every response matches the documented status
codes, headers, content types and schemas. Bounded: 120 examples per operation."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from service.auth import hash_key
from tests.service.conftest import wait_until
from tests.service.test_e2e_processes import free_port

ROOT = Path(__file__).resolve().parents[2]
KEY = "schemathesis-key"
schema = schemathesis.openapi.from_path(ROOT / "openapi.yaml")


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of an embedded gateway serving the fake engine, killed afterwards."""
    port, logs = free_port(), tmp_path_factory.mktemp("schemathesis")
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(ROOT),
        "HF_HUB_OFFLINE": "1",
        "TEXTGENSHAP_API_KEYS": hash_key(KEY),
        "TEXTGENSHAP_RATE_LIMIT_PER_MINUTE": "0",  # the fuzzer is one very busy client
        "TEXTGENSHAP_MAX_BUDGET": "64",
    }
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
        yield base
    finally:
        proc.kill()
        proc.wait(10)


@schema.parametrize()
@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
)
def test_the_gateway_honours_its_published_contract(case: schemathesis.Case, gateway: str) -> None:
    # deployment limits (budget cap, served models) legitimately refuse some
    # schema-valid bodies with a documented 422, so "valid data is accepted" cannot hold
    case.call_and_validate(
        base_url=gateway,
        headers={"Authorization": f"Bearer {KEY}"},
        excluded_checks=[positive_data_acceptance],
        timeout=10,
    )
