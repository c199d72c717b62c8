"""Redis down is a 503 with Retry-After (never a 500); settings refuse invalid values."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from service.app import create_app
from service.contract.settings import Settings
from service.queues.redis_queue import RedisQueue
from tests.service.payloads import explain_body

DOWN = "redis://127.0.0.1:1/0"  # nothing listens on port 1


@pytest.fixture
def client_without_redis() -> TestClient:
    settings = Settings(redis_url=DOWN, redis_timeout_seconds=0.5, retry_after_seconds=9)
    return TestClient(create_app(settings, RedisQueue(settings)))


@pytest.mark.parametrize(
    ("method", "path"),
    [("post", "/explain"), ("get", "/jobs/abc"), ("delete", "/jobs/abc"), ("get", "/models")],
)
def test_redis_down_is_503_with_retry_after(
    client_without_redis: TestClient, method: str, path: str
) -> None:
    kwargs = {"json": explain_body()} if method == "post" else {}
    response = client_without_redis.request(method.upper(), path, **kwargs)
    assert response.status_code == 503
    assert response.headers["retry-after"] == "9"
    assert response.json()["detail"].startswith("Redis is unavailable")
    assert "127.0.0.1" not in response.text  # no internal address for an anonymous caller
    assert "Error" not in response.text


def test_probes_while_redis_is_down(client_without_redis: TestClient) -> None:
    assert client_without_redis.get("/healthz").status_code == 200
    ready = client_without_redis.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["reason"].startswith("Redis is unavailable")
    assert "127.0.0.1" not in ready.text
    metrics = client_without_redis.get("/metrics")
    assert metrics.status_code == 200
    assert "textgenshap_queue_depth" not in metrics.text  # unknown, not a made-up zero


def test_settings_come_from_prefixed_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEXTGENSHAP_QUEUE_MAX", "17")
    monkeypatch.setenv("TEXTGENSHAP_DEFAULT_MODEL", "tiny-llama")
    monkeypatch.setenv("TEXTGENSHAP_MODEL_CACHE_DIR", "~/models")
    settings = Settings()
    assert (settings.queue_max, settings.default_model) == (17, "tiny-llama")
    assert settings.embedded
    assert "~" not in str(settings.model_cache_dir)


@pytest.mark.parametrize(
    ("variable", "value", "field"),
    [
        ("TEXTGENSHAP_QUEUE_MAX", "0", "queue_max"),
        ("TEXTGENSHAP_LEASE_SECONDS", "soon", "lease_seconds"),
        ("TEXTGENSHAP_MAX_DELIVERIES", "-1", "max_deliveries"),
        ("TEXTGENSHAP_REDIS_URL", "localhost:6379", "redis_url"),
        ("TEXTGENSHAP_MAX_DOCUMENT_CHARS", "999999999", "max_document_chars"),
    ],
)
def test_invalid_settings_refuse_to_start(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, field: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError) as error:
        Settings()
    assert field in str(error.value)
