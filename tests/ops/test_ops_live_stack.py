"""The observability stack for real: a gateway and two workers (fake engines) on the test
Redis, scraped by a real Prometheus (Debian package) configured from the shipped
prometheus.yml and alerts.yml. After a few jobs (succeeded, failed, cancelled, one 429),
every dashboard query must evaluate and return data, and every metric the dashboards and
alerts name must be exported. The gateway has API keys on: the test's requests carry the
key, Prometheus's scrapes do not.
"""

from __future__ import annotations

import math
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from ops_assets import (
    SYNTHETIC_METRICS,
    Query,
    dashboard_queries,
    exported_sample_names,
    label_values_metric,
    referenced_metrics,
    substitute_variables,
    variable_queries,
)
from ops_live_stack import API_KEY, LiveStack, start_stack

QUESTION = "What is the capital of France?"
DOCUMENTS = [
    {"title": "France", "text": "Paris is the capital of France. It lies on the Seine."},
    {"title": "Tower", "text": "The Eiffel Tower stands in Paris. It opened in 1889."},
    {"title": "Germany", "text": "Berlin is the capital of Germany."},
]
TERMINAL = {"succeeded", "failed", "cancelled"}


def _job(model: str | None = None) -> dict[str, object]:
    body: dict[str, object] = {"question": QUESTION, "documents": DOCUMENTS, "budget": 16}
    if model:
        body["model"] = model
    return body


def _wait_terminal(client: httpx.Client, job_id: str, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.get(f"/jobs/{job_id}").json()["status"]
        if status in TERMINAL:
            return status
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} not finished after {timeout}s")


def _wait_served(client: httpx.Client, model: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if model in {m["name"] for m in client.get("/models").json()["models"]}:
            return
        time.sleep(0.1)
    raise AssertionError(f"no worker serves {model!r} after {timeout}s")


def _traffic(stack: LiveStack) -> dict[str, str]:
    """Jobs of every outcome and responses of every class the dashboards show."""
    outcomes: dict[str, str] = {}
    keyed = {"X-API-Key": API_KEY}
    with httpx.Client(base_url=stack.gateway_url, headers=keyed, timeout=10) as client:
        refused = httpx.post(f"{stack.gateway_url}/explain", json=_job(), timeout=10)
        assert (refused.status_code, refused.headers["WWW-Authenticate"]) == (401, "Bearer")
        unknown = httpx.get(f"{stack.gateway_url}/jobs/x", headers={"X-API-Key": "wrong"})
        assert unknown.json()["detail"] == (
            "missing or unknown API key (send Authorization: Bearer <key> or X-API-Key)"
        )
        first = client.post("/explain", json=_job())
        second = client.post("/explain", json=_job())
        full = client.post("/explain", json=_job())  # queue_max=2, no worker yet
        assert (first.status_code, second.status_code, full.status_code) == (202, 202, 429)
        assert full.headers["Retry-After"] == "5"
        cancelled = client.delete(f"/jobs/{second.json()['job_id']}")
        assert cancelled.json()["status"] == "cancelled"
        assert client.get("/jobs/no-such-job").status_code == 404
        assert client.post("/explain", json={"question": ""}).status_code == 422
        stack.start_workers()
        _wait_served(client, "fake")
        _wait_served(client, "fake-raising")
        outcomes["first"] = _wait_terminal(client, first.json()["job_id"])
        # one at a time: the queue bound (2) stays clear of the worker's pace
        for name, model in (("third", None), ("failing", "fake-raising")):
            accepted = client.post("/explain", json=_job(model))
            assert accepted.status_code == 202, accepted.text
            outcomes[name] = _wait_terminal(client, accepted.json()["job_id"])
    return outcomes


@pytest.fixture(scope="module")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveStack]:
    prefix = f"ops-live-{uuid.uuid4().hex[:10]}:"
    with start_stack(redis_url, prefix, tmp_path_factory.mktemp("prometheus")) as live:
        live.outcomes = _traffic(live)
        live.wait_scraped('sum(textgenshap_worker_jobs_total{status="failed"})', expected=1.0)
        yield live


def test_jobs_ran_to_the_expected_outcomes(stack: LiveStack) -> None:
    assert stack.outcomes == {"first": "succeeded", "third": "succeeded", "failing": "failed"}


def test_prometheus_scrapes_the_gateway_and_both_workers(stack: LiveStack) -> None:
    targets = stack.prometheus_api("targets")["activeTargets"]
    health = sorted((t["labels"]["job"], t["health"]) for t in targets)
    assert health == [
        ("prometheus", "up"),
        ("textgenshap-gateway", "up"),
        ("textgenshap-worker", "up"),
        ("textgenshap-worker", "up"),
    ]


def test_health_readiness_and_metrics_need_no_key(stack: LiveStack) -> None:
    """What probes and Prometheus call answers without a key (jobs do not: _traffic)."""
    with httpx.Client(base_url=stack.gateway_url, timeout=10) as anonymous:
        assert anonymous.get("/healthz").json() == {"status": "ok"}
        assert anonymous.get("/readyz").json() == {"status": "ready", "workers": 2, "reason": ""}
        metrics = anonymous.get("/metrics")
    assert metrics.status_code == 200
    assert "textgenshap_queue_depth" in exported_sample_names(metrics.text)


def test_prometheus_holds_the_counts_of_what_happened(stack: LiveStack) -> None:
    finished = stack.instant_by("sum by (status) (textgenshap_jobs_finished_total)", "status")
    assert finished == {"succeeded": 2.0, "failed": 1.0, "cancelled": 1.0}
    per_worker = stack.instant_by("sum by (status) (textgenshap_worker_jobs_total)", "status")
    assert per_worker == {"succeeded": 2.0, "failed": 1.0}
    rejected = stack.instant_by("sum by (reason) (textgenshap_rejected_requests_total)", "reason")
    # every reason is exported from the start (at 0), so the dashboards read 0, not "No data"
    assert rejected == {
        "queue_full": 1.0,
        "active_jobs": 0.0,
        "body_too_large": 0.0,
        "rate_limit": 0.0,
        "unavailable": 0.0,
    }
    submitted = stack.instant_by("sum by (model) (textgenshap_jobs_submitted_total)", "model")
    assert submitted == {"fake": 3.0, "fake-raising": 1.0}
    codes = stack.instant_by(
        'sum by (status) (textgenshap_http_requests_total{route!="/metrics"})', "status"
    )
    assert {code: codes.get(code) for code in ("401", "404", "422", "429")} == {
        "401": 2.0,
        "404": 1.0,
        "422": 1.0,
        "429": 1.0,
    }


def test_every_metric_in_dashboards_and_alerts_is_exported(stack: LiveStack) -> None:
    exported = set()
    for url in stack.metrics_urls:
        exported |= exported_sample_names(httpx.get(url, timeout=10).text)
    missing = {
        name: sorted(uses)
        for name, uses in referenced_metrics().items()
        if name not in exported | SYNTHETIC_METRICS
    }
    assert missing == {}


QUERIES = dashboard_queries()


@pytest.mark.parametrize("query", QUERIES, ids=[q.where for q in QUERIES])
def test_dashboard_query_returns_data(stack: LiveStack, query: Query) -> None:
    """The query as Grafana sends it (range for graphs, instant for tables)."""
    expr = substitute_variables(query.expr)
    if query.instant:
        result = stack.prometheus_api("query", query=expr)["result"]
    else:
        end = time.time()
        result = stack.prometheus_api("query_range", query=expr, start=end - 60, end=end, step=1)[
            "result"
        ]
    assert result, f"no data for {expr}"


@pytest.mark.parametrize("query", variable_queries())
def test_dashboard_variable_lists_values(stack: LiveStack, query: str) -> None:
    metric = label_values_metric(query)
    label = query.rsplit(",", 1)[1].strip(" )")
    values = stack.prometheus_api(f"label/{label}/values", **{"match[]": metric})
    assert values, query


def test_alert_rules_evaluate_and_stay_quiet_on_a_healthy_stack(stack: LiveStack) -> None:
    stack.wait_rules_evaluated()
    (group,) = stack.prometheus_api("rules")["groups"]
    states = {rule["name"]: (rule["health"], rule["state"]) for rule in group["rules"]}
    assert states["TextgenshapNoLiveWorkers"] == ("ok", "inactive")
    assert states["TextgenshapGatewayDown"] == ("ok", "inactive")
    assert {health for health, _ in states.values()} == {"ok"}
    errors = [r.get("lastError") for r in group["rules"] if r.get("lastError")]
    assert errors == []


def test_busy_gauge_returns_to_zero_between_jobs(stack: LiveStack) -> None:
    busy = stack.instant_by("textgenshap_worker_busy", "instance")
    assert len(busy) == 2
    assert all(value == 0.0 for value in busy.values())
    load = stack.instant_by("textgenshap_worker_model_load_seconds", "model")
    assert set(load) == {"fake", "fake-raising"}
    assert all(math.isfinite(v) and v >= 0 for v in load.values())


def test_prometheus_storage_is_in_the_test_tmpdir(stack: LiveStack) -> None:
    assert Path(stack.storage).is_dir()
    assert any(Path(stack.storage).iterdir())


def test_gateway_served_everything_with_torch_unimportable(stack: LiveStack) -> None:
    """The whole run above went through a gateway that cannot import the GPU stack."""
    env = stack.gateway_env
    for name in ("torch", "transformers", "flash_attn"):
        probe = subprocess.run(
            [sys.executable, "-c", f"import {name}"],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert f"{name} is not installed in the gateway image" in probe.stderr
    gateway = httpx.get(f"{stack.gateway_url}/healthz", timeout=5)
    assert gateway.status_code == 200
