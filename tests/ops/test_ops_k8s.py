"""The Kubernetes manifests (deploy/k8s) against the code they deploy, offline.

Each overlay is rendered with ``kubectl kustomize`` and checked: built-in kinds validate
against the Kubernetes schemas (kubernetes-validate); the KEDA trigger names the Redis,
stream and per-worker load the code really uses (read from its constants and settings,
not retyped); probes hit routes and ports that exist; the pod's termination grace covers
the worker's SIGTERM window; selectors match pods. Two tests on the real queue show why
the trigger reads the stream's length and not the consumer group's pending or lag counts.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
import yaml
from fastapi.testclient import TestClient
from ops_assets import ALERT_RULES, DASHBOARD_DIR, ROOT
from prometheus_client import CollectorRegistry

from service.app import create_app
from service.contract.jobs import NewJob, Outcome
from service.contract.schemas import ExplainRequest
from service.contract.settings import Settings
from service.queues.memory_queue import MemoryQueue
from service.queues.redis_base import GROUP, STREAM_KEY
from service.queues.redis_queue import RedisQueue
from tests.service.payloads import explain_body
from worker.loop import add_arguments

K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ["production", "scale-to-zero", "managed-redis"]
KUBERNETES_VERSION = "1.30"  # oldest minor still in upstream support when written
HANDBACK_SECONDS = 30  # after --grace: notice the stop between batches, hand the job back
KUBECTL = shutil.which("kubectl")
needs_kubectl = pytest.mark.skipif(
    KUBECTL is None, reason="needs kubectl >= 1.27 (kustomize v5) to render deploy/k8s"
)


def render(path: Path) -> list[dict[str, Any]]:
    """The objects ``kubectl apply -k path`` would send."""
    assert KUBECTL is not None
    out = subprocess.run(
        [KUBECTL, "kustomize", str(path)], check=True, capture_output=True, text=True
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request: pytest.FixtureRequest) -> dict[tuple[str, str], dict[str, Any]]:
    if KUBECTL is None:
        pytest.skip("needs kubectl >= 1.27 (kustomize v5) to render deploy/k8s")
    return {(o["kind"], o["metadata"]["name"]): o for o in render(K8S / "overlays" / request.param)}


def container(objects: dict, kind: str, name: str) -> dict[str, Any]:
    return objects[(kind, name)]["spec"]["template"]["spec"]["containers"][0]


def worker_args(objects: dict) -> argparse.Namespace:
    """The worker Deployment's command line, parsed by the worker's own parser."""
    command = container(objects, "Deployment", "textgenshap-worker")["command"]
    assert command[:2] == ["textgenshap", "worker"]
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(command[2:])


def settings_of(objects: dict) -> Settings:
    """The settings every container reads (the shared ConfigMap), as the code parses them."""
    data = objects[("ConfigMap", "textgenshap-config")]["data"]
    return Settings(**{k.removeprefix("TEXTGENSHAP_").lower(): v for k, v in data.items()})


@needs_kubectl
def test_builtin_kinds_validate_against_the_kubernetes_schemas(rendered) -> None:
    import kubernetes_validate

    checked = set()
    for (kind, _name), obj in rendered.items():
        if obj["apiVersion"].split("/")[0] in ("keda.sh", "monitoring.coreos.com"):
            continue  # CRDs: the next tests check what the code depends on
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        checked.add(kind)
    assert {"Deployment", "Service", "ConfigMap", "PodDisruptionBudget"} <= checked


@needs_kubectl
def test_the_keda_trigger_reads_the_stream_and_redis_the_workers_use(rendered) -> None:
    settings, args = settings_of(rendered), worker_args(rendered)
    scaled = rendered[("ScaledObject", "textgenshap-worker")]
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    assert scaled["spec"]["scaleTargetRef"]["name"] == "textgenshap-worker"
    (trigger,) = scaled["spec"]["triggers"]
    meta = trigger["metadata"]
    assert trigger["type"] == "redis-streams"
    (model,) = args.models
    assert meta["stream"] == settings.key_prefix + STREAM_KEY.format(model=model)
    url = urlsplit(settings.redis_url)
    assert meta["address"] == f"{url.hostname}:{url.port or 6379}"
    assert meta["databaseIndex"] == (url.path.strip("/") or "0")
    # stream-length mode: a consumerGroup key would switch KEDA to pending/lag counts
    assert "consumerGroup" not in meta
    assert "lagCount" not in meta
    assert int(meta["streamLength"]) == args.concurrency  # one unfinished job per slot
    spec = scaled["spec"]
    assert 0 <= spec["minReplicaCount"] <= 1 < spec["maxReplicaCount"]


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_the_scale_to_zero_overlay_lets_the_workers_reach_zero(overlay: str) -> None:
    objects = {(o["kind"], o["metadata"]["name"]): o for o in render(K8S / "overlays" / overlay)}
    least = 0 if overlay == "scale-to-zero" else 1
    assert objects[("ScaledObject", "textgenshap-worker")]["spec"]["minReplicaCount"] == least
    assert objects[("Deployment", "textgenshap-worker")]["spec"]["replicas"] == least


@needs_kubectl
def test_probes_point_at_routes_and_ports_that_exist(rendered) -> None:
    gateway = container(rendered, "Deployment", "textgenshap-gateway")
    ports = {p["name"]: p["containerPort"] for p in gateway["ports"]}
    assert gateway["command"][-2:] == ["--port", str(ports["http"])]
    app = create_app(Settings(), MemoryQueue(Settings()), CollectorRegistry())
    client = TestClient(app)
    for probe in ("readinessProbe", "livenessProbe"):
        get = gateway[probe]["httpGet"]
        assert get["port"] in ports
        # the route exists, and with no worker running the gateway still passes both
        # probes (scale to zero): an unknown path would be a 404, a worker check a 503
        assert client.get(get["path"]).status_code == 200, probe
    worker, args = container(rendered, "Deployment", "textgenshap-worker"), worker_args(rendered)
    ports = {p["name"]: p["containerPort"] for p in worker["ports"]}
    assert ports["metrics"] == args.metrics_port
    assert args.metrics_host == "0.0.0.0"
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert worker[probe]["httpGet"] == {"path": "/metrics", "port": "metrics"}
    # the startup probe waits out a cold model load (dequantising the GGUF: ~1 min on CPU)
    startup = worker["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300


@needs_kubectl
def test_the_termination_grace_covers_the_workers_sigterm_window(rendered) -> None:
    pod = rendered[("Deployment", "textgenshap-worker")]["spec"]["template"]["spec"]
    grace = worker_args(rendered).grace
    assert grace > 0
    assert grace + HANDBACK_SECONDS <= pod["terminationGracePeriodSeconds"] <= grace + 60
    assert "preStop" not in container(rendered, "Deployment", "textgenshap-worker").get(
        "lifecycle", {}
    )  # SIGTERM itself starts the drain; a preStop sleep would eat the grace


@needs_kubectl
def test_selectors_match_their_pods_and_services_their_ports(rendered) -> None:
    pods = {
        name: obj["spec"]["template"]
        for (kind, name), obj in rendered.items()
        if kind in ("Deployment", "StatefulSet")
    }
    for name, template in pods.items():
        selector = rendered.get(("Deployment", name), rendered.get(("StatefulSet", name)))
        assert (
            selector["spec"]["selector"]["matchLabels"].items()
            <= template["metadata"]["labels"].items()
        )
    for (kind, name), obj in rendered.items():
        if kind == "PodDisruptionBudget":
            labels = pods[name]["metadata"]["labels"]
            assert obj["spec"]["selector"]["matchLabels"].items() <= labels.items()
        if kind == "Service":
            (template,) = [
                t
                for t in pods.values()
                if obj["spec"]["selector"].items() <= t["metadata"]["labels"].items()
            ]
            named = {p["name"] for p in template["spec"]["containers"][0]["ports"]}
            assert {p["targetPort"] for p in obj["spec"]["ports"]} <= named


@needs_kubectl
def test_the_gateway_reads_its_api_keys_from_the_secret_the_docs_create(rendered) -> None:
    gateway = container(rendered, "Deployment", "textgenshap-gateway")
    (secret,) = [s["secretRef"]["name"] for s in gateway["envFrom"] if "secretRef" in s]
    docs = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    assert f"kubectl -n textgenshap create secret generic {secret}" in docs
    assert "--from-literal=TEXTGENSHAP_API_KEYS=" in docs


@needs_kubectl
def test_the_monitoring_configmaps_hold_the_files_compose_mounts(rendered) -> None:
    boards = rendered[("ConfigMap", "textgenshap-grafana-dashboards")]
    assert boards["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert boards["data"] == {p.name: p.read_text() for p in sorted(DASHBOARD_DIR.glob("*.json"))}
    rules = rendered[("ConfigMap", "textgenshap-prometheus-rules")]["data"]
    assert rules == {"alerts.yml": ALERT_RULES.read_text()}


@needs_kubectl
def test_service_monitors_give_the_job_names_the_alerts_select(tmp_path: Path) -> None:
    overlay = K8S / "overlays" / "with-monitors-under-test"
    overlay.mkdir()
    try:
        (overlay / "kustomization.yaml").write_text(
            "resources: [../production]\ncomponents: [../../components/service-monitors]\n"
        )
        objects = {(o["kind"], o["metadata"]["name"]): o for o in render(overlay)}
    finally:
        shutil.rmtree(overlay)
    jobs = set(re.findall(r'job="([^"]+)"', ALERT_RULES.read_text()))
    assert jobs == {"textgenshap-gateway", "textgenshap-worker"}
    for job in jobs:  # the Operator names a target's job after its Service
        monitor, service = objects[("ServiceMonitor", job)], objects[("Service", job)]
        assert (
            monitor["spec"]["selector"]["matchLabels"].items()
            <= service["metadata"]["labels"].items()
        )
        (endpoint,) = monitor["spec"]["endpoints"]
        assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}


# --- why the stream's length, on the real queue --------------------------------------


@pytest.fixture
def queue(redis_url: str, key_prefix: str) -> Iterator[RedisQueue]:
    q = RedisQueue(Settings(redis_url=redis_url, key_prefix=key_prefix))
    yield q
    q.close()


def submit(queue: RedisQueue) -> str:
    job = NewJob("fake", ExplainRequest.model_validate(explain_body()))
    return queue.submit(job).job.job_id


def stream_state(redis_url: str, stream: str) -> dict[str, Any]:
    """What each mode of KEDA's redis-streams scaler would read."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        groups = client.xinfo_groups(stream) if client.exists(stream) else []
        group = next((g for g in groups if g["name"] == GROUP), None)
        return {
            "length": client.xlen(stream),
            "pending": group["pending"] if group else None,
            "lag": group["lag"] if group else None,
        }
    finally:
        client.close()


def test_the_stream_length_counts_every_unfinished_job_from_zero_workers_on(
    queue: RedisQueue, redis_url: str, key_prefix: str
) -> None:
    stream = key_prefix + STREAM_KEY.format(model="fake")
    first, second, third = submit(queue), submit(queue), submit(queue)
    # no worker has ever run: there is no consumer group to read pending or lag from
    assert stream_state(redis_url, stream) == {"length": 3, "pending": None, "lag": None}
    lease = queue.take("w1", ["fake"], timeout=1)
    assert lease is not None
    assert lease.job_id == first
    assert stream_state(redis_url, stream) == {"length": 3, "pending": 1, "lag": 2}
    queue.cancel(third)  # a waiting job cancelled: its entry is deleted unread
    state = stream_state(redis_url, stream)
    assert state["length"] == 2  # one running + one waiting: two workers' worth
    assert state["pending"] == 1  # pending sees only the running job
    assert state["lag"] is None  # Redis cannot count the lag across a deleted entry
    queue.finish(lease, Outcome.cancelled())
    assert stream_state(redis_url, stream)["length"] == 1
    queue.cancel(second)
    assert stream_state(redis_url, stream)["length"] == 0  # nothing left: scale to min
