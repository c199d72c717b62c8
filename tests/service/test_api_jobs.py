"""The job API in both modes: submit, poll, result, progress, cancel, idempotency, TTL,
queue bound, readiness and models. Workers are in-process threads over fake engines."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from tests.fakes import FakeEngine
from tests.service.conftest import StackFactory, wait_until
from tests.service.payloads import check_result, explain_body


def test_submit_poll_succeed(make_stack: StackFactory) -> None:
    stack = make_stack()
    stack.start_worker(FakeEngine("fake"))
    body = explain_body()
    response = stack.client.post("/explain", json=body)
    assert response.status_code == 202
    accepted = response.json()
    assert accepted["status"] == "queued"
    assert accepted["status_url"] == f"/jobs/{accepted['job_id']}"
    assert response.headers["location"] == accepted["status_url"]
    view = stack.wait(accepted["job_id"])
    assert view["status"] == "succeeded", view
    assert view["error"] is None
    assert view["model"] == "fake"
    assert view["deliveries"] == 1
    assert view["created_at"] <= view["started_at"] <= view["finished_at"]
    assert view["result"]["answer"] == "Paris."
    assert view["result"]["candidates"][0]["text"] == "Paris."
    assert view["result"]["passage_ranking"][0] == 0
    assert view["result"]["stats"]["model"] == "fake"
    check_result(view["result"], body)


def test_fast_mode_is_asked_for_and_reported(make_stack: StackFactory) -> None:
    stack = make_stack()
    engine = FakeEngine("fake")
    stack.start_worker(engine)
    exact = stack.wait(stack.client.post("/explain", json=explain_body()).json()["job_id"])
    body = explain_body(fast=True, seed=1)
    fast = stack.wait(stack.client.post("/explain", json=body).json()["job_id"])
    assert exact["result"]["stats"]["fast"] is False
    assert fast["status"] == "succeeded", fast
    assert fast["result"]["stats"]["fast"] is True
    # the fast job's checks ran on an exact session of the same engine
    assert [s.stats.fast for s in engine.sessions] == [False, True, False]
    agreed = fast["result"]["stats"]["fast_agreement"]
    assert agreed["answers_agree"] == 1.0  # the fake's fast sessions answer exactly
    assert agreed["coalitions"] == 5  # the full context, 2 removals, 2 keeps of 3 documents
    assert exact["result"]["stats"]["fast_agreement"] is None


def test_default_model_is_used_when_none_given(make_stack: StackFactory) -> None:
    stack = make_stack()
    stack.start_worker(FakeEngine("fake"))
    body = explain_body(model=None)
    view = stack.wait(stack.submit(body))
    assert (view["status"], view["model"]) == ("succeeded", "fake")


def test_progress_is_reported_while_running(make_stack: StackFactory) -> None:
    stack = make_stack()
    stack.start_worker(FakeEngine("fake", delay=0.05))
    job_id = stack.submit(explain_body())
    seen: set[str] = set()

    def progressed() -> bool:
        view = stack.client.get(f"/jobs/{job_id}").json()
        if view["status"] == "running" and view["progress"]["total"] > 0:
            seen.add(view["progress"]["stage"])
        return "document" in seen or "sentence" in seen

    wait_until(progressed, timeout=20)
    assert seen <= {"answer", "document", "sentence", "ranking", "checks"}
    assert stack.wait(job_id)["status"] == "succeeded"


def test_cancel_a_queued_job(make_stack: StackFactory) -> None:
    stack = make_stack()
    job_id = stack.submit(explain_body())
    response = stack.client.delete(f"/jobs/{job_id}")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    engine = FakeEngine("fake")
    stack.start_worker(engine)
    time.sleep(0.3)
    assert stack.client.get(f"/jobs/{job_id}").json()["status"] == "cancelled"
    assert engine.sessions == []  # never ran
    assert stack.queue.counts().queued == 0


def test_cancel_a_running_job(make_stack: StackFactory) -> None:
    stack = make_stack()
    engine = FakeEngine("fake", delay=0.3)
    stack.start_worker(engine)
    job_id = stack.submit(explain_body())
    stack.wait(job_id, ("running",))
    response = stack.client.delete(f"/jobs/{job_id}")
    assert response.status_code == 202
    assert response.json()["cancel_requested"] is True
    view = stack.wait(job_id)
    assert view["status"] == "cancelled"
    assert view["result"] is None
    assert engine.sessions[0].calls <= 3  # stopped between batches, not at the end
    again = stack.client.delete(f"/jobs/{job_id}")
    assert (again.status_code, again.json()["status"]) == (200, "cancelled")


def test_cancel_a_finished_job_is_409(make_stack: StackFactory) -> None:
    stack = make_stack()
    stack.start_worker(FakeEngine("fake"))
    job_id = stack.submit(explain_body())
    assert stack.wait(job_id)["status"] == "succeeded"
    response = stack.client.delete(f"/jobs/{job_id}")
    assert response.status_code == 409
    assert response.json() == {"detail": f"job {job_id!r} already succeeded; nothing to cancel"}


def test_idempotency_key_returns_the_same_job(make_stack: StackFactory) -> None:
    stack = make_stack()
    body = explain_body()
    first = stack.submit(body, **{"Idempotency-Key": "abc"})
    second = stack.submit(body, **{"Idempotency-Key": "abc"})
    other = stack.submit(body, **{"Idempotency-Key": "xyz"})
    plain = stack.submit(body)
    assert first == second
    assert len({first, other, plain}) == 3
    assert stack.queue.counts().queued == 3


def test_records_expire_after_the_result_ttl(make_stack: StackFactory) -> None:
    stack = make_stack(result_ttl_seconds=1)
    stack.start_worker(FakeEngine("fake"))
    job_id = stack.submit(explain_body())
    assert stack.wait(job_id)["status"] == "succeeded"
    wait_until(lambda: stack.client.get(f"/jobs/{job_id}").status_code == 404, timeout=5)


def test_queue_full_is_429_with_retry_after(make_stack: StackFactory) -> None:
    stack = make_stack(queue_max=2)
    stack.submit(explain_body())
    stack.submit(explain_body())
    response = stack.client.post("/explain", json=explain_body())
    assert response.status_code == 429
    assert response.headers["retry-after"] == "7"
    assert response.json() == {"detail": "the queue is full (2 unfinished jobs); retry later"}
    metrics = stack.client.get("/metrics").text
    assert 'textgenshap_rejected_requests_total{reason="queue_full"} 1.0' in metrics


def test_readiness_and_models_follow_live_workers(make_stack: StackFactory) -> None:
    stack = make_stack()
    assert stack.client.get("/healthz").json() == {"status": "ok"}
    not_ready = stack.client.get("/readyz")
    assert not_ready.status_code == 503
    assert not_ready.json()["reason"] == "no live worker"
    assert stack.client.get("/models").json() == {"default": "fake", "models": []}
    stack.start_worker(FakeEngine("fake"))
    stack.start_worker(FakeEngine("other"))
    ready = stack.client.get("/readyz")
    assert (ready.status_code, ready.json()["workers"]) == (200, 2)
    assert stack.client.get("/models").json() == {
        "default": "fake",
        "models": [{"name": "fake", "workers": 1}, {"name": "other", "workers": 1}],
    }
    stack.stop_workers()
    assert stack.client.get("/readyz").status_code == 503


def test_a_gateway_whose_workers_scale_to_zero_stays_ready_and_takes_their_jobs(
    make_stack: StackFactory,
) -> None:
    """With KEDA the workers are scaled to zero on an empty queue: the gateway's readiness
    probe must not need a worker, and jobs for a scaled model must queue, or no job could
    arrive to scale the workers up (docs/deploy.md)."""
    stack = make_stack(scaled_models="other, third")
    assert stack.client.get("/readyz").status_code == 503
    idle = stack.client.get("/readyz", params={"require_worker": "false"})
    assert (idle.status_code, idle.json()) == (200, {"status": "ready", "workers": 0, "reason": ""})
    queued = stack.client.post("/explain", json=explain_body(model="other"))
    assert queued.status_code == 202
    assert stack.client.get(queued.headers["location"]).json()["status"] == "queued"
    refused = stack.client.post("/explain", json=explain_body(model="fourth"))
    assert refused.status_code == 422
    assert "served: ['fake', 'other', 'third']" in refused.text
    stack.start_worker(FakeEngine("other"))
    status_url = queued.headers["location"]
    wait_until(lambda: stack.client.get(status_url).json()["status"] == "succeeded", timeout=20)


def test_jobs_go_to_workers_serving_their_model(make_stack: StackFactory) -> None:
    stack = make_stack()
    fake, other = FakeEngine("fake"), FakeEngine("other")
    stack.start_worker(fake)
    stack.start_worker(other)
    jobs = [stack.submit(explain_body(model=m)) for m in ("other", "fake", "other")]
    views = [stack.wait(j) for j in jobs]
    assert [v["status"] for v in views] == ["succeeded"] * 3
    assert [v["result"]["stats"]["model"] for v in views] == ["other", "fake", "other"]
    assert (len(fake.sessions), len(other.sessions)) == (1, 2)


def test_metrics_show_gateway_and_worker_sets(make_stack: StackFactory) -> None:
    stack = make_stack()
    stack.start_worker(FakeEngine("fake"))
    assert stack.wait(stack.submit(explain_body()))["status"] == "succeeded"
    text = stack.client.get("/metrics").text
    for line in (
        'textgenshap_jobs_submitted_total{model="fake"} 1.0',
        'textgenshap_jobs_finished_total{status="succeeded"} 1.0',
        "textgenshap_queue_depth 0.0",
        "textgenshap_queue_pending 0.0",
        'textgenshap_worker_jobs_total{status="succeeded"} 1.0',
        'textgenshap_http_requests_total{method="POST",route="/explain",status="202"} 1.0',
        "textgenshap_worker_busy 0.0",
    ):
        assert line in text, line
    for name in (
        "textgenshap_http_request_duration_seconds_bucket",
        "textgenshap_worker_coalitions_total",
        "textgenshap_worker_forward_passes_total",
        "textgenshap_worker_tokens_computed_total",
        "textgenshap_worker_batch_size_bucket",
        "textgenshap_worker_stage_duration_seconds_bucket",
        'textgenshap_worker_memory_bytes{kind="rss"}',
    ):
        assert name in text, name


def test_concurrent_submissions_with_one_key_make_one_job(make_stack: StackFactory) -> None:
    stack = make_stack()
    headers = {"Idempotency-Key": "same"}
    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(lambda _: stack.submit(explain_body(), **headers), range(16)))
    assert len(set(ids)) == 1
    assert stack.queue.counts().queued == 1


def test_the_queue_bound_holds_under_concurrent_submissions(make_stack: StackFactory) -> None:
    stack = make_stack(queue_max=3)
    with ThreadPoolExecutor(8) as pool:
        codes = list(
            pool.map(
                lambda _: stack.client.post("/explain", json=explain_body()).status_code, range(12)
            )
        )
    assert sorted(codes) == [202] * 3 + [429] * 9
    assert stack.queue.counts().queued == 3


def test_the_worker_hands_freed_memory_back_after_each_job(
    make_stack: StackFactory, monkeypatch
) -> None:
    import worker.loop

    released: list[int] = []
    monkeypatch.setattr(worker.loop, "release_free_memory", lambda: released.append(1))
    stack = make_stack()
    stack.start_worker(FakeEngine("fake"))
    for count in (1, 2):
        job = stack.client.post("/explain", json=explain_body()).json()["job_id"]
        assert stack.wait(job)["status"] == "succeeded"
        wait_until(lambda n=count: len(released) == n)  # noqa: B023
    time.sleep(0.3)  # idle polling releases nothing
    assert len(released) == 2
