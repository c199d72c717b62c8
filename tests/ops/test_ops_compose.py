"""docker-compose.yml: the five services, their health checks, Redis persistence, the GPU
reservation and scalability of workers, and agreement with the Prometheus/Grafana files.
No Docker engine here, so `docker-compose config` (which needs none) is the schema check."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from ops_assets import (
    COMPOSE_FILE,
    DASHBOARD_DIR,
    DOCKERFILE,
    PROMETHEUS_CONFIG,
    ROOT,
    load_yaml,
    require_tool,
)
from test_ops_dockerfile import parse_dockerfile

from service.auth import check_startup, hash_key
from service.contract.settings import Settings


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    return load_yaml(COMPOSE_FILE)["services"]


def _option(command: list[str], flag: str) -> str:
    return command[command.index(flag) + 1]


def test_compose_defines_the_stack(services: dict[str, Any]) -> None:
    assert set(services) == {"redis", "gateway", "worker", "prometheus", "grafana"}


def test_every_service_has_a_healthcheck_with_a_command(services: dict[str, Any]) -> None:
    for name, service in services.items():
        test = service["healthcheck"]["test"]
        assert test[0] == "CMD", name
        assert len(test) > 1, name


def test_redis_persists_with_aof_on_a_named_volume(services: dict[str, Any]) -> None:
    redis = services["redis"]
    command = redis["command"]
    assert _option(command, "--appendonly") == "yes"
    assert _option(command, "--maxmemory-policy") == "noeviction"
    # a bounded Redis: past it writes are refused and the gateway answers 503
    assert _option(command, "--maxmemory") == "${TEXTGENSHAP_REDIS_MAXMEMORY:-1gb}"
    assert "redis-data:/data" in redis["volumes"]
    assert redis["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]


def test_gateway_uses_redis_and_checks_healthz(services: dict[str, Any]) -> None:
    gateway = services["gateway"]
    assert gateway["build"]["target"] == "gateway"
    assert gateway["environment"]["TEXTGENSHAP_REDIS_URL"] == "redis://redis:6379/0"
    assert gateway["ports"] == ["${TEXTGENSHAP_PORT:-8000}:8000"]
    assert "http://127.0.0.1:8000/healthz" in " ".join(gateway["healthcheck"]["test"])
    assert gateway["depends_on"]["redis"]["condition"] == "service_healthy"


def test_worker_reserves_an_nvidia_gpu(services: dict[str, Any]) -> None:
    devices = services["worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]


def test_worker_can_scale_no_fixed_name_or_host_port(services: dict[str, Any]) -> None:
    worker = services["worker"]
    assert "container_name" not in worker
    assert "ports" not in worker
    assert worker["build"]["target"] == "worker"
    assert "model-cache:/models" in worker["volumes"]
    assert worker["environment"]["TEXTGENSHAP_MODEL_CACHE_DIR"] == "/models"


def test_worker_talks_to_the_compose_redis(services: dict[str, Any]) -> None:
    command = services["worker"]["command"]
    assert command[:2] == ["textgenshap", "worker"]
    assert _option(command, "--redis") == "redis://redis:6379/0"
    assert _option(command, "--model") == "${TEXTGENSHAP_WORKER_MODEL:-gemma-3-270m}"


def test_prometheus_finds_workers_on_their_metrics_port(services: dict[str, Any]) -> None:
    port = int(_option(services["worker"]["command"], "--metrics-port"))
    jobs = {job["job_name"]: job for job in load_yaml(PROMETHEUS_CONFIG)["scrape_configs"]}
    (dns,) = jobs["textgenshap-worker"]["dns_sd_configs"]
    assert dns == {"names": ["worker"], "type": "A", "port": port, "refresh_interval": "15s"}
    assert f"127.0.0.1:{port}/metrics" in " ".join(services["worker"]["healthcheck"]["test"])
    assert jobs["textgenshap-gateway"]["static_configs"] == [{"targets": ["gateway:8000"]}]


def test_bind_mounted_config_directories_exist(services: dict[str, Any]) -> None:
    mounts = [v for s in services.values() for v in s.get("volumes", []) if v.startswith("./")]
    assert len(mounts) == 3
    for mount in mounts:
        source = mount.split(":")[0]
        assert (ROOT / source).is_dir(), mount


def test_grafana_home_dashboard_is_a_shipped_file(services: dict[str, Any]) -> None:
    env = services["grafana"]["environment"]
    home = env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (
        "./docker/grafana/dashboards:/etc/grafana/dashboards:ro" in (services["grafana"]["volumes"])
    )
    assert home.startswith("/etc/grafana/dashboards/")
    assert (DASHBOARD_DIR / home.rsplit("/", 1)[1]).is_file()
    assert env["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"


def _compose_command() -> list[str]:
    """`docker compose` (v2 plugin) when present, else the standalone `docker-compose`."""
    docker = shutil.which("docker")
    if docker is not None:
        plugin = subprocess.run([docker, "compose", "version"], capture_output=True, check=False)
        if plugin.returncode == 0:
            return [docker, "compose"]
    return [require_tool("docker-compose")]


# The gateway refuses to start on 0.0.0.0 without keys, so compose insists on this variable;
# the tests render the file with one configured key (a hash, as in a real .env).
TEST_KEY = "ops-compose-test-key"
TEST_ENV = {"TEXTGENSHAP_API_KEYS": hash_key(TEST_KEY)}


def run_compose_config(
    *files: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`docker compose config` over ``files`` in an environment of ``env`` plus the test's
    own, minus any TEXTGENSHAP_* setting of the shell that runs the tests."""
    options = [arg for path in files for arg in ("-f", str(path))]
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("TEXTGENSHAP_")}
    return subprocess.run(
        [*_compose_command(), *options, "config"],
        capture_output=True,
        text=True,
        env={**inherited, **(env or {})},
        cwd=ROOT,
        timeout=60,
        check=False,
    )


def compose_config(*files: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    """The resolved configuration `docker compose config` prints; fails on an invalid file."""
    result = run_compose_config(*files, env={**TEST_ENV, **(env or {})})
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_docker_compose_config_validates_the_file_offline() -> None:
    resolved = compose_config(COMPOSE_FILE, env={"TEXTGENSHAP_WORKER_MODEL": "smollm2-135m"})
    assert resolved["services"]["worker"]["command"][5] == "smollm2-135m"
    assert set(resolved["volumes"]) == {
        "redis-data",
        "model-cache",
        "prometheus-data",
        "grafana-data",
    }


def test_docker_compose_rejects_an_unknown_option(tmp_path: Path) -> None:
    """The schema check is real: a misspelt key fails."""
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(COMPOSE_FILE.read_text().replace("stop_grace_period:", "stop_grace:"))
    with pytest.raises(AssertionError, match="stop_grace"):
        compose_config(broken)


def test_multi_gpu_override_in_the_deploy_doc_is_valid(tmp_path: Path) -> None:
    text = (ROOT / "docs" / "deploy.md").read_text()
    (snippet,) = [b for b in re.findall(r"```yaml\n(.*?)```", text, re.S) if "worker-gpu1" in b]
    override = tmp_path / "docker-compose.override.yml"
    override.write_text(snippet)
    resolved = compose_config(COMPOSE_FILE, override)
    extra = resolved["services"]["worker-gpu1"]
    devices = extra["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "device_ids": ["1"], "capabilities": ["gpu"]}]
    assert extra["command"] == resolved["services"]["worker"]["command"]


def test_compose_stops_with_a_clear_message_without_api_keys() -> None:
    for env in ({}, {"TEXTGENSHAP_API_KEYS": ""}):
        result = run_compose_config(COMPOSE_FILE, env=env)
        assert result.returncode != 0
        assert (
            "set TEXTGENSHAP_API_KEYS to the sha256 of each API key, comma-separated "
            "(python -m service.auth KEY; see docs/deploy.md)"
        ) in result.stderr


def test_compose_hands_the_key_hashes_to_the_gateway_only() -> None:
    hashes = f"{hash_key('a')},{hash_key('b')}"
    resolved = compose_config(COMPOSE_FILE, env={"TEXTGENSHAP_API_KEYS": hashes})
    assert resolved["services"]["gateway"]["environment"]["TEXTGENSHAP_API_KEYS"] == hashes
    for name in ("worker", "redis", "prometheus", "grafana"):
        environment = resolved["services"][name].get("environment", {})
        assert "TEXTGENSHAP_API_KEYS" not in environment, name


def _gateway_cmd_host() -> str:
    _, stages = parse_dockerfile(DOCKERFILE.read_text())
    (cmd,) = stages["gateway"].all("CMD")
    argv: list[str] = json.loads(cmd)
    return argv[argv.index("--host") + 1]


def test_the_gateway_as_composed_passes_its_start_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """The image's CMD binds 0.0.0.0; with the environment compose gives the gateway, the
    start-up check that refuses open binds without keys lets it start, keys on."""
    host = _gateway_cmd_host()
    assert host == "0.0.0.0"
    environment = compose_config(COMPOSE_FILE)["services"]["gateway"]["environment"]
    for name, value in environment.items():
        monkeypatch.setenv(name, str(value))
    ring = check_startup(Settings(), host)
    assert ring.enabled
    assert ring.owner(TEST_KEY) == hash_key(TEST_KEY)
    assert ring.owner("another key") is None


def test_key_file_override_in_the_deploy_doc_is_valid(tmp_path: Path) -> None:
    text = (ROOT / "docs" / "deploy.md").read_text()
    (snippet,) = [b for b in re.findall(r"```yaml\n(.*?)```", text, re.S) if "API_KEYS_FILE" in b]
    override = tmp_path / "docker-compose.override.yml"
    override.write_text(snippet)
    gateway = compose_config(COMPOSE_FILE, override)["services"]["gateway"]
    inside = gateway["environment"]["TEXTGENSHAP_API_KEYS_FILE"]
    assert [_bind(v) for v in gateway["volumes"]] == [(ROOT / "api-key-hashes", inside, True)]


def _bind(volume: str | dict[str, Any]) -> tuple[Path, str, bool]:
    """(host path, container path, read-only) of a bind mount in either form `config`
    prints: the short string (docker-compose 1.x) or the long mapping (Compose v2)."""
    if isinstance(volume, str):
        source, target, *mode = volume.split(":")
        return Path(source), target, mode == ["ro"]
    return Path(volume["source"]), volume["target"], bool(volume.get("read_only"))
