"""Every bad input is a 4xx whose message names the field, in both modes; never a 500."""

from __future__ import annotations

from typing import Any

import pytest

from tests.service.conftest import StackFactory

LIMITS = {
    "max_documents": 3,
    "max_document_chars": 50,
    "max_total_chars": 80,
    "max_budget": 256,
    "max_body_bytes": 4096,
}
GOOD: dict[str, Any] = {"question": "Who wrote it?", "documents": ["Ann wrote it.", "Bob read it."]}


def body(**changes: Any) -> dict[str, Any]:
    data = {**GOOD, **changes}
    return {k: v for k, v in data.items() if v is not ...}


CASES = [
    ("empty question", body(question=""), "question"),
    ("blank question", body(question="   "), "question"),
    ("missing question", body(question=...), "question"),
    ("question wrong type", body(question=5), "question"),
    ("no documents", body(documents=[]), "documents"),
    ("missing documents", body(documents=...), "documents"),
    ("documents not a list", body(documents="Ann wrote it."), "documents"),
    ("blank document", body(documents=["  "]), "documents"),
    ("too many documents", body(documents=["a", "b", "c", "d"]), "documents"),
    ("document too large", body(documents=["x" * 51]), "documents.0.text"),
    ("too large in total", body(documents=["x" * 45, {"text": "y" * 45}]), "documents"),
    ("unknown model", body(model="no-such-model"), "model"),
    ("factory model from a request", body(model="py:os:getcwd"), "model"),
    ("budget over the cap", body(budget=1000), "budget"),
    ("fast not a boolean", body(fast="maybe"), "fast"),
    ("budget zero", body(budget=0), "budget"),
    ("budget wrong type", body(budget="many"), "budget"),
    ("levels not a prefix", body(levels=["word"]), "levels"),
    ("unknown method", body(method="lime"), "method"),
    ("max_new_tokens too large", body(max_new_tokens=1000), "max_new_tokens"),
    ("unknown field", body(temperature=0.5), "temperature"),
    ("refine k zero", body(refine={"rule": "top_k", "k": 0}), "refine.k"),
]


@pytest.mark.parametrize(("name", "payload", "field"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_422_naming_the_field(
    make_stack: StackFactory, name: str, payload: dict[str, Any], field: str
) -> None:
    stack = make_stack(**LIMITS)
    response = stack.client.post("/explain", json=payload)
    assert response.status_code == 422, response.text
    messages = [error["msg"] for error in response.json()["detail"]]
    # the path prefixes the message; a whole-body rule names the field in its text
    named = [
        m
        for m in messages
        if m.startswith((f"{field}:", f"{field}.", f"body: Value error, {field} "))
    ]
    assert named, messages


def test_malformed_json_is_422_not_500(make_stack: StackFactory) -> None:
    stack = make_stack()
    response = stack.client.post(
        "/explain",
        content=b'{"question": "q", "documents": [',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "json_invalid"


@pytest.mark.parametrize("payload", [b"[1, 2]", b'"text"', b"null"])
def test_body_that_is_not_an_object_is_422(make_stack: StackFactory, payload: bytes) -> None:
    stack = make_stack()
    headers = {"content-type": "application/json"}
    response = stack.client.post("/explain", content=payload, headers=headers)
    assert response.status_code == 422
    assert response.json()["detail"][0]["msg"].startswith("body:")


def test_body_over_the_size_limit_is_413(make_stack: StackFactory) -> None:
    stack = make_stack(**LIMITS)
    response = stack.client.post("/explain", json=body(documents=["x" * 5000]))
    assert response.status_code == 413
    assert response.json() == {"detail": "request body is larger than max_body_bytes=4096"}


def test_chunked_body_over_the_size_limit_is_413(make_stack: StackFactory) -> None:
    stack = make_stack(**LIMITS)
    chunks = iter([b'{"question": "q", "documents": ["', b"x" * 5000, b'"]}'])
    response = stack.client.post(
        "/explain", content=chunks, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413


def test_body_longer_than_its_declared_length_is_counted_and_refused() -> None:
    """A small Content-Length beside a chunked body (h11 frames it as chunked): the bytes
    actually read count, so the app never sees more than the limit."""
    import asyncio

    from prometheus_client import CollectorRegistry

    from service.app import BodyLimit
    from service.contract.settings import Settings
    from service.metrics import GatewayMetrics
    from service.queues.memory_queue import MemoryQueue

    seen: list[int] = []

    async def app(scope, receive, send):  # noqa: ANN001, ANN202
        total = 0
        while True:
            message = await receive()
            total += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        seen.append(total)

    chunks = [b"x" * 1000] * 10
    messages = [{"type": "http.request", "body": c, "more_body": True} for c in chunks]
    messages.append({"type": "http.request", "body": b"", "more_body": False})
    sent: list[dict] = []

    async def receive():  # noqa: ANN202
        return messages.pop(0)

    async def send(message):  # noqa: ANN001, ANN202
        sent.append(message)

    metrics = GatewayMetrics(CollectorRegistry(), MemoryQueue(Settings()))
    scope = {"type": "http", "method": "POST", "headers": [(b"content-length", b"10")]}
    asyncio.run(BodyLimit(app, 4096, metrics)(scope, receive, send))
    assert seen == []
    assert sent[0]["status"] == 413
    assert len(messages) < 8  # stopped reading at the limit, not at the end of the body


def test_idempotency_key_with_another_body_is_422(make_stack: StackFactory) -> None:
    stack = make_stack()
    first = stack.client.post("/explain", json=GOOD, headers={"Idempotency-Key": "k-1"})
    assert first.status_code == 202
    again = stack.client.post(
        "/explain", json=body(question="Another?"), headers={"Idempotency-Key": "k-1"}
    )
    assert again.status_code == 422
    assert again.json()["detail"][0]["loc"] == ["header", "Idempotency-Key"]
    assert again.json()["detail"][0]["msg"].startswith("header.Idempotency-Key:")


def test_unknown_job_is_404(make_stack: StackFactory) -> None:
    stack = make_stack()
    assert stack.client.get("/jobs/nope").status_code == 404
    deleted = stack.client.delete("/jobs/nope")
    assert deleted.status_code == 404
    assert "not found" in deleted.json()["detail"]


def test_rejections_never_enqueue_and_are_counted(make_stack: StackFactory) -> None:
    stack = make_stack(**LIMITS)
    stack.client.post("/explain", json=body(budget=1000))
    stack.client.post("/explain", json=body(model="nope"))
    stack.client.post("/explain", json=body(question=""))
    stack.client.post("/explain", json=body(documents=["x" * 5000]))
    counts = stack.queue.counts()
    assert (counts.queued, counts.pending) == (0, 0)
    metrics = stack.client.get("/metrics").text
    # input errors are the client's: counted as 4xx requests, not as rejections (alerts)
    assert 'textgenshap_rejected_requests_total{reason="body_too_large"} 1.0' in metrics
    assert 'reason="invalid"' not in metrics
    route = 'method="POST",route="/explain"'
    assert f'textgenshap_http_requests_total{{{route},status="422"}} 3.0' in metrics


def test_every_rejection_series_exists_at_zero_on_a_fresh_gateway(make_stack: StackFactory) -> None:
    from service.metrics import REJECTION_REASONS

    metrics = make_stack().client.get("/metrics").text
    for reason in REJECTION_REASONS:
        assert f'textgenshap_rejected_requests_total{{reason="{reason}"}} 0.0' in metrics


def test_arbitrary_method_strings_share_one_label(make_stack: StackFactory) -> None:
    stack = make_stack()
    for i in range(20):
        stack.client.request(f"BREW{i}", "/healthz")
    metrics = stack.client.get("/metrics").text
    assert "BREW" not in metrics
    assert 'method="other",route="/healthz"' in metrics


def test_every_response_carries_the_security_headers(make_stack: StackFactory) -> None:
    stack = make_stack()
    for path in ("/", "/healthz", "/jobs/nope", "/static/app.js"):
        headers = stack.client.get(path).headers
        assert headers["x-frame-options"] == "DENY", path
        assert headers["x-content-type-options"] == "nosniff", path
        assert "default-src 'self'" in headers["content-security-policy"], path
        assert "frame-ancestors 'none'" in headers["content-security-policy"], path


def test_a_keyless_loopback_gateway_answers_only_loopback_host_names() -> None:
    """Against DNS rebinding: a page on evil.example whose name now resolves to 127.0.0.1
    sends Host: evil.example, and the keyless gateway must not answer it."""
    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.auth import allowed_hosts, host_name
    from service.contract.settings import Settings
    from service.queues.memory_queue import MemoryQueue

    settings = Settings()
    assert allowed_hosts(settings, "127.0.0.1") == ["localhost", "127.0.0.1", "[::1]"]
    assert allowed_hosts(settings, "0.0.0.0") is None  # served to others: keys are required
    assert allowed_hosts(Settings(allowed_hosts="api.example, Other"), "0.0.0.0") == [
        "api.example",
        "other",
    ]
    assert (host_name("[::1]:8000"), host_name("LocalHost:80"), host_name("a.b")) == (
        "[::1]",
        "localhost",
        "a.b",
    )
    hosts = allowed_hosts(settings, "127.0.0.1")
    client = TestClient(create_app(settings, MemoryQueue(settings), allowed_hosts=hosts))
    for good in ("127.0.0.1:8000", "localhost:8000", "[::1]:8000", "localhost"):
        assert client.get("/healthz", headers={"host": good}).status_code == 200, good
    refused = client.get("/healthz", headers={"host": "evil.example:8000"})
    assert refused.status_code == 400
    assert "Host" in refused.json()["detail"]
