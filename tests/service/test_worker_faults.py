"""Worker fault handling in both modes: poison jobs, dead workers, bad input, shutdown."""

from __future__ import annotations

from typing import Any

from service.contract.jobs import NewJob
from service.contract.schemas import ExplainRequest
from tests.fakes import FakeEngine
from tests.service.conftest import StackFactory
from tests.service.payloads import check_result, explain_body
from worker.engine.errors import ContextTooLong, FastModeUnsupported


class TooLongEngine(FakeEngine):
    """Every prompt is over the context window (a job that can never succeed)."""

    def open_session(self, question: str, documents: Any, **_: Any) -> Any:
        raise ContextTooLong(tokens=5000, limit=512)


class NoFastModeEngine(FakeEngine):
    """An encoder-decoder's refusal of fast mode."""

    def open_session(self, question: str, documents: Any, **kwargs: Any) -> Any:
        if kwargs.get("fast"):
            raise FastModeUnsupported("fast mode is for decoder-only models")
        return super().open_session(question, documents, **kwargs)


def test_an_engine_that_raises_fails_the_job_after_max_deliveries(
    make_stack: StackFactory,
) -> None:
    stack = make_stack(max_deliveries=2)
    raising = FakeEngine("fake-raising", raising=True)
    stack.start_worker(raising)
    stack.start_worker(FakeEngine("fake"))
    poison = stack.submit(explain_body(model="fake-raising"))
    healthy = stack.submit(explain_body())
    view = stack.wait(poison)
    assert view["status"] == "failed"
    assert view["deliveries"] == 2
    assert view["error"] == {
        "type": "RuntimeError",
        "message": "engine exploded (failed on all 2 deliveries; max_deliveries=2)",
    }
    assert len(raising.sessions) == 2
    assert stack.wait(healthy)["status"] == "succeeded"


def test_bad_input_found_by_the_engine_fails_at_once(make_stack: StackFactory) -> None:
    stack = make_stack(max_deliveries=3)
    stack.start_worker(TooLongEngine("fake"))
    view = stack.wait(stack.submit(explain_body()))
    assert view["status"] == "failed"
    assert view["deliveries"] == 1
    assert view["error"]["type"] == "ContextTooLong"
    assert "5000 tokens" in view["error"]["message"]


def test_fast_mode_on_a_model_without_it_fails_at_once(make_stack: StackFactory) -> None:
    stack = make_stack(max_deliveries=3)
    stack.start_worker(NoFastModeEngine("fake"))
    view = stack.wait(stack.submit(explain_body(fast=True)))
    assert (view["status"], view["deliveries"]) == ("failed", 1)
    assert view["error"] == {
        "type": "FastModeUnsupported",
        "message": "fast mode is for decoder-only models",
    }
    assert stack.wait(stack.submit(explain_body()))["status"] == "succeeded"


def test_a_dead_workers_job_is_redelivered_and_succeeds_once(make_stack: StackFactory) -> None:
    stack = make_stack(lease_seconds=0.5)
    body = explain_body()
    job_id = stack.submit(body)
    assert stack.queue.take("crashed-worker", ["fake"], 1.0) is not None  # never renewed
    engine = FakeEngine("fake")
    stack.start_worker(engine)
    view = stack.wait(job_id)
    assert (view["status"], view["deliveries"]) == ("succeeded", 2)
    check_result(view["result"], body)
    assert len(engine.sessions) == 1
    assert stack.queue.counts().finished == {"succeeded": 1}


def test_a_job_delivered_too_often_fails_saying_so(make_stack: StackFactory) -> None:
    stack = make_stack(lease_seconds=0.3, max_deliveries=1)
    job = stack.queue.submit(NewJob("fake", ExplainRequest(**explain_body()))).job
    assert stack.queue.take("crashed-worker", ["fake"], 1.0) is not None
    engine = FakeEngine("fake")
    stack.start_worker(engine)
    view = stack.wait(job.job_id)
    assert view["status"] == "failed"
    assert view["error"] == {
        "type": "MaxDeliveriesExceeded",
        "message": "job was delivered 1 time without finishing (max_deliveries=1); "
        "the workers holding it stopped without reporting (killed or crashed)",
    }
    assert engine.sessions == []


def test_shutdown_hands_the_running_job_back(make_stack: StackFactory) -> None:
    stack = make_stack()
    slow = FakeEngine("fake", delay=0.3)
    worker = stack.start_worker(slow, worker_id="leaving")
    job_id = stack.submit(explain_body())
    stack.wait(job_id, ("running",))
    worker.stop(grace=0.0)
    assert stack.wait(job_id, ("queued",))["progress"]["stage"] != "queued"
    stack.start_worker(FakeEngine("fake"), worker_id="arriving")
    view = stack.wait(job_id)
    assert (view["status"], view["deliveries"]) == ("succeeded", 1)  # the delivery was given back
    assert stack.queue.counts().finished == {"succeeded": 1}


def test_a_job_past_its_deadline_fails_once_and_is_never_redelivered(
    make_stack: StackFactory,
) -> None:
    """A poison job (every batch slow) stops at its deadline with a clear error; no other
    worker picks it up again."""
    stack = make_stack(max_deliveries=3, job_deadline_seconds=0.5)
    slow = FakeEngine("fake", delay=0.2)
    stack.start_worker(slow)
    view = stack.wait(stack.submit(explain_body(budget=64)))
    assert view["status"] == "failed"
    assert view["deliveries"] == 1
    assert view["error"]["type"] == "JobDeadlineExceeded"
    assert "job_deadline_seconds=0.5" in view["error"]["message"]
    assert len(slow.sessions) == 1


def test_a_job_far_slower_than_its_own_answer_meets_the_deadline_derived_from_it(
    make_stack: StackFactory,
) -> None:
    """Without a tight cap, the deadline comes from the job's own speed: factor x the
    full-context answer's seconds x levels x budget (here 0.01 x 0.2 s x 128 = 0.26 s,
    while the job's batches take 0.2 s each)."""
    stack = make_stack(job_deadline_factor=0.01, job_deadline_floor_seconds=0)
    stack.start_worker(FakeEngine("fake", delay=0.2))
    view = stack.wait(stack.submit(explain_body(budget=64)))
    assert (view["status"], view["deliveries"]) == ("failed", 1)
    assert view["error"]["type"] == "JobDeadlineExceeded"
    message = view["error"]["message"]
    assert "job_deadline_factor=0.01 x the full-context answer's 0.2" in message
    assert "x 128 planned coalitions" in message


def test_the_derived_deadline_leaves_an_ordinary_job_alone(make_stack: StackFactory) -> None:
    """The default factor (8) with the floor at 0: a job whose coalitions cost what its
    answer did finishes well inside factor x answer x coalitions."""
    stack = make_stack(job_deadline_floor_seconds=0)
    stack.start_worker(FakeEngine("fake", delay=0.02))
    view = stack.wait(stack.submit(explain_body(budget=64)))
    assert view["status"] == "succeeded"


def test_a_level_over_the_unit_cap_fails_at_once(make_stack: StackFactory) -> None:
    """The gateway refuses such a job at submit (tests/reliability/test_limits.py); a job
    that reached the queue anyway (a gateway with a larger cap) fails in the worker."""
    stack = make_stack(max_deliveries=3, max_units_per_level=3)
    stack.start_worker(FakeEngine("fake"))
    request = ExplainRequest.model_validate(explain_body(documents=["a", "b", "c", "d"]))
    view = stack.wait(stack.queue.submit(NewJob("fake", request)).job.job_id)
    assert view["status"] == "failed"
    assert view["deliveries"] == 1
    assert view["error"]["type"] == "ShapleyInputError"
    assert "max_units_per_level=3" in view["error"]["message"]
