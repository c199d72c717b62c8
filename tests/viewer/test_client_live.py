"""The client against a live gateway (real app, embedded worker, rule-based NQ engine)."""

from __future__ import annotations

import asyncio

import pytest

from service.client.api import AsyncClient, Client
from service.client.errors import ApiError, JobCancelled
from service.contract.results import ExplainResult
from service.contract.schemas import ExplainRequest, JobStatus, JobView
from service.viewer import examples
from tests.viewer.conftest import MODEL

RONTGEN, MOSELEY = "Wilhelm Conrad Röntgen", "Henry Moseley"


def nq_request(levels: list[str], budget: int = 64) -> ExplainRequest:
    """The first bundled example: gold passage (Röntgen) at index 2, Moseley at 0."""
    example = examples()[0]
    documents = [{"title": d["title"], "text": d["text"]} for d in example["documents"]]
    return ExplainRequest.model_validate(
        {
            "question": example["question"],
            "documents": documents,
            "model": MODEL,
            "levels": levels,
            "budget": budget,
        }
    )


def _check_result(result: ExplainResult, request: ExplainRequest) -> None:
    assert result.answer == RONTGEN
    assert [c.text for c in result.candidates][:2] == [RONTGEN, MOSELEY]
    assert result.passage_ranking[0] == 2
    documents = request.document_objects()
    for level in result.levels:
        for f in level.features:
            assert len(f.score) == len(f.stderr) == len(result.candidates)
            assert documents[f.document].text[f.start : f.end] == f.text


def test_explain_returns_the_typed_result(gateway: str) -> None:
    request = nq_request(["document", "sentence"])
    with Client(gateway) as client:
        result = client.explain(request, poll_interval=0.05, timeout=60)
    _check_result(result, request)
    assert [level.level for level in result.levels] == ["document", "sentence"]
    document_scores = {f.document: f.score[0] for f in result.levels[0].features}
    assert document_scores[2] == pytest.approx(1.0)
    assert document_scores[0] == pytest.approx(0.0)
    assert result.stats.model == MODEL


def test_wait_reports_progress_and_ends_succeeded(gateway: str) -> None:
    views: list[JobView] = []
    with Client(gateway) as client:
        accepted = client.submit(nq_request(["document", "sentence", "word"]))
        assert accepted.status is JobStatus.queued
        assert accepted.status_url == f"/jobs/{accepted.job_id}"
        job = client.wait(accepted.job_id, timeout=60, poll_interval=0.02, on_progress=views.append)
    assert job.status is JobStatus.succeeded
    assert views[-1] == job
    assert all(v.job_id == accepted.job_id for v in views)
    assert job.result is not None
    assert [level.level for level in job.result.levels] == ["document", "sentence", "word"]


def test_idempotency_key_returns_the_same_job(gateway: str) -> None:
    request = nq_request(["document"], budget=32)
    with Client(gateway) as client:
        first = client.submit(request, idempotency_key="viewer-idem-1")
        again = client.submit(request, idempotency_key="viewer-idem-1")
        other = client.submit(request)
    assert again.job_id == first.job_id
    assert other.job_id != first.job_id


def test_unknown_job_is_a_404_api_error(gateway: str) -> None:
    with Client(gateway) as client, pytest.raises(ApiError) as info:
        client.get("no-such-job")
    assert info.value.status == 404
    assert "no-such-job" in str(info.value.detail)


def test_deployment_limits_come_back_as_422_naming_the_field(gateway: str) -> None:
    request = nq_request(["document"]).model_copy(update={"model": "no-such-model"})
    with Client(gateway) as client, pytest.raises(ApiError) as info:
        client.submit(request)
    assert info.value.status == 422
    assert info.value.detail[0]["loc"] == ["body", "model"]
    assert str(info.value).startswith("HTTP 422: model: unknown model 'no-such-model'")


def test_cancel_queued_and_running_jobs_and_refuse_finished_ones(gateway: str) -> None:
    with Client(gateway) as client:
        busy = client.submit(nq_request(["document", "sentence", "word"], budget=4096))
        queued = client.submit(nq_request(["document"], budget=16))
        view = client.cancel(queued.job_id)
        assert view.status is JobStatus.cancelled
        with pytest.raises(JobCancelled):
            client.wait(queued.job_id, timeout=10, poll_interval=0.02)
        running = client.cancel(busy.job_id)
        assert running.cancel_requested or running.status is JobStatus.cancelled
        with pytest.raises(JobCancelled) as info:
            client.wait(busy.job_id, timeout=30, poll_interval=0.02)
        assert info.value.job.status is JobStatus.cancelled
        done = client.submit(nq_request(["document"], budget=16))
        client.wait(done.job_id, timeout=30, poll_interval=0.02)
        with pytest.raises(ApiError) as refused:
            client.cancel(done.job_id)
    assert refused.value.status == 409


def test_async_client_explains_and_lists_models(gateway: str) -> None:
    request = nq_request(["document", "sentence"])

    async def run() -> tuple[ExplainResult, list[str]]:
        async with AsyncClient(gateway) as client:
            models = await client.models()
            result = await client.explain(request, poll_interval=0.02, timeout=60)
            return result, [m.name for m in models.models]

    result, names = asyncio.run(run())
    _check_result(result, request)
    assert names == [MODEL]
