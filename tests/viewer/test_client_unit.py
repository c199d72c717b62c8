"""Client behaviour that needs no server: headers, error mapping, the wait loop."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import httpx
import pytest

from service.client.api import AsyncClient, Client
from service.client.errors import ApiError, JobCancelled, JobFailed, JobTimeout, describe_detail
from service.contract.schemas import ExplainRequest, JobStatus
from tests.viewer.sample import sample_result

REQUEST = ExplainRequest(question="q?", documents=["one", "two"])


def _job(status: str, done: int = 0, **extra: object) -> dict[str, object]:
    return {
        "job_id": "j1",
        "status": status,
        "model": "fake",
        "progress": {"stage": "document", "done": done, "total": 4},
        "created_at": "2026-01-01T00:00:00Z",
        **extra,
    }


def _scripted(bodies: list[dict[str, object]], seen: list[httpx.Request]) -> httpx.MockTransport:
    """GET /jobs/j1 answers the bodies in turn (the last one repeats)."""

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.method == "POST":
            return httpx.Response(202, json={"job_id": "j1", "status": "queued", "status_url": "/"})
        body = bodies.pop(0) if len(bodies) > 1 else bodies[0]
        return httpx.Response(200, json=body)

    return httpx.MockTransport(handle)


def _client(handler: Callable[[httpx.Request], httpx.Response], key: str | None = None) -> Client:
    return Client("http://gw", key, transport=httpx.MockTransport(handler))


def test_api_key_goes_in_both_headers_and_idempotency_key_is_sent() -> None:
    seen: list[httpx.Request] = []
    client = Client("http://gw", "s3cret", transport=_scripted([_job("queued")], seen))
    accepted = client.submit(REQUEST, idempotency_key="k-1")
    assert accepted.job_id == "j1"
    assert seen[0].headers["authorization"] == "Bearer s3cret"
    assert seen[0].headers["x-api-key"] == "s3cret"
    assert seen[0].headers["idempotency-key"] == "k-1"
    body = json.loads(seen[0].content)
    assert body["question"] == "q?"
    assert body["documents"] == ["one", "two"]
    assert "model" not in body  # None fields are left to the server's defaults


def test_no_api_key_sends_no_auth_headers() -> None:
    seen: list[httpx.Request] = []
    Client("http://gw", transport=_scripted([_job("queued")], seen)).get("j1")
    assert "authorization" not in seen[0].headers
    assert "x-api-key" not in seen[0].headers


def test_http_errors_become_api_error_with_status_and_detail() -> None:
    detail = [
        {
            "loc": ["body", "budget"],
            "msg": "budget: budget 9999 is over the cap max_budget=2048",
            "type": "limit",
        }
    ]
    client = _client(lambda _r: httpx.Response(422, json={"detail": detail}))
    with pytest.raises(ApiError) as info:
        client.submit(REQUEST)
    assert info.value.status == 422
    assert info.value.detail == detail
    assert str(info.value) == "HTTP 422: budget: budget 9999 is over the cap max_budget=2048"


def test_non_json_error_body_is_kept_as_text() -> None:
    client = _client(lambda _r: httpx.Response(502, text="bad gateway"))
    with pytest.raises(ApiError) as info:
        client.get("j1")
    assert (info.value.status, info.value.detail) == (502, "bad gateway")


def test_describe_detail_names_fields_in_plain_words() -> None:
    fastapi_style = [
        {"loc": ["body", "question"], "msg": "Value error, question must not be blank"},
        {"loc": ["body", "documents", 0, "text"], "msg": "Field required"},
    ]
    assert describe_detail(fastapi_style) == (
        "question: question must not be blank; documents.0.text: Field required"
    )
    assert describe_detail("no such job") == "no such job"


def test_wait_reports_progress_until_success_and_explain_returns_the_result() -> None:
    result = sample_result().model_dump(mode="json")
    bodies = [_job("queued"), _job("running", 2), _job("succeeded", 4, result=result)]
    seen: list[httpx.Request] = []
    client = Client("http://gw", transport=_scripted(bodies, seen))
    views = []
    got = client.explain(REQUEST, poll_interval=0.0, on_progress=views.append)
    assert got == sample_result()
    assert [(v.status, v.progress.done) for v in views] == [
        (JobStatus.queued, 0),
        (JobStatus.running, 2),
        (JobStatus.succeeded, 4),
    ]


def test_wait_raises_typed_errors_for_failed_and_cancelled_jobs() -> None:
    error = {"type": "ContextTooLong", "message": "5000 tokens > 2048"}
    failing = Client("http://gw", transport=_scripted([_job("failed", error=error)], []))
    with pytest.raises(JobFailed, match="ContextTooLong: 5000 tokens > 2048") as info:
        failing.wait("j1", poll_interval=0.0)
    assert info.value.job.error is not None
    cancelled = Client("http://gw", transport=_scripted([_job("cancelled")], []))
    with pytest.raises(JobCancelled):
        cancelled.wait("j1", poll_interval=0.0)


def test_wait_times_out_with_the_last_state_seen() -> None:
    client = Client("http://gw", transport=_scripted([_job("running", 3)], []))
    with pytest.raises(JobTimeout, match="still running after 0.05 s") as info:
        client.wait("j1", timeout=0.05, poll_interval=0.01)
    assert info.value.job.progress.done == 3


def test_async_client_explains_like_the_sync_one() -> None:
    result = sample_result().model_dump(mode="json")
    bodies = [_job("running", 1), _job("succeeded", 4, result=result)]
    sync_transport = _scripted(bodies, [])

    async def handle(request: httpx.Request) -> httpx.Response:
        return sync_transport.handle_request(request)

    async def run() -> object:
        async with AsyncClient("http://gw", transport=httpx.MockTransport(handle)) as client:
            return await client.explain(REQUEST, poll_interval=0.0)

    assert asyncio.run(run()) == sample_result()


def test_wait_polls_through_a_gateway_restart_but_not_through_a_404() -> None:
    answers = [
        httpx.Response(503, json={"detail": "queue unavailable"}),
        httpx.ConnectError("connection refused"),
        httpx.Response(200, json=_job("cancelled")),
    ]

    def handle(_request: httpx.Request) -> httpx.Response:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    with pytest.raises(JobCancelled):
        _client(handle).wait("j1", timeout=5, poll_interval=0.0)
    assert answers == []
    missing = _client(lambda _r: httpx.Response(404, json={"detail": "no job 'j1'"}))
    with pytest.raises(ApiError, match="HTTP 404: no job 'j1'"):
        missing.wait("j1", timeout=5, poll_interval=0.0)


def test_wait_gives_up_on_an_unavailable_gateway_at_the_timeout() -> None:
    down = _client(lambda _r: httpx.Response(503, json={"detail": "queue unavailable"}))
    with pytest.raises(ApiError) as info:
        down.wait("j1", timeout=0.05, poll_interval=0.01)
    assert info.value.status == 503
