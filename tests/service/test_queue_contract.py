"""Lease semantics of both queue adapters, driven directly (no HTTP, no worker)."""

from __future__ import annotations

import time

import redis

from service.contract.jobs import NewJob, Outcome
from service.contract.schemas import ErrorInfo, ExplainRequest, JobStatus, Progress
from service.contract.settings import Settings
from service.queues.redis_queue import RedisQueue
from tests.service.conftest import StackFactory

REQUEST = ExplainRequest(question="What is the capital of France?", documents=["Paris."])
ERROR = ErrorInfo(type="RuntimeError", message="boom")


def test_an_expired_lease_is_redelivered_and_only_its_new_holder_stores(
    make_stack: StackFactory,
) -> None:
    queue = make_stack(lease_seconds=0.3).queue
    job = queue.submit(NewJob("fake", REQUEST)).job
    first = queue.take("dead", ["fake"], 1.0)
    assert first is not None
    assert first.deliveries == 1
    assert queue.take("alive", ["fake"], 0.1) is None  # still leased
    time.sleep(0.4)
    second = queue.take("alive", ["fake"], 1.0)
    assert second is not None
    assert (second.job_id, second.deliveries) == (job.job_id, 2)
    assert not queue.renew(first)
    assert not queue.progress(first, Progress(stage="document", done=1, total=2))
    assert not queue.finish(first, Outcome.failed(ERROR))
    assert queue.progress(second, Progress(stage="document", done=2, total=2))
    assert queue.finish(second, Outcome.cancelled())
    assert not queue.finish(second, Outcome.failed(ERROR))  # stored once
    record = queue.get(job.job_id)
    assert record is not None
    assert (record.status, record.deliveries, record.error) == (JobStatus.cancelled, 2, None)
    assert queue.counts().finished == {"cancelled": 1}
    assert (queue.counts().queued, queue.counts().pending) == (0, 0)


def test_renewal_keeps_the_lease(make_stack: StackFactory) -> None:
    queue = make_stack(lease_seconds=0.3).queue
    queue.submit(NewJob("fake", REQUEST))
    lease = queue.take("w1", ["fake"], 1.0)
    assert lease is not None
    for _ in range(6):
        time.sleep(0.1)
        assert queue.renew(lease)
        assert queue.take("w2", ["fake"], 0.0) is None
    assert queue.counts().pending == 1


def test_release_hands_back_with_or_without_spending_the_delivery(
    make_stack: StackFactory,
) -> None:
    queue = make_stack().queue
    job = queue.submit(NewJob("fake", REQUEST)).job
    lease = queue.take("w1", ["fake"], 1.0)
    assert lease is not None
    queue.release(lease)  # shutdown: not spent
    assert queue.get(job.job_id).status == JobStatus.queued  # type: ignore[union-attr]
    again = queue.take("w2", ["fake"], 1.0)
    assert again is not None
    assert again.deliveries == 1
    queue.note_error(again, ERROR)
    queue.release(again, spend=True)  # failure: spent
    third = queue.take("w3", ["fake"], 1.0)
    assert third is not None
    assert third.deliveries == 2
    assert third.job.last_error == ERROR


def test_jobs_only_reach_workers_of_their_model(make_stack: StackFactory) -> None:
    queue = make_stack().queue
    queue.submit(NewJob("a", REQUEST))
    assert queue.take("w", ["b"], 0.2) is None
    lease = queue.take("w", ["b", "a"], 0.2)
    assert lease is not None
    assert lease.job.model == "a"


def test_cancel_of_a_running_job_sets_the_flag(make_stack: StackFactory) -> None:
    queue = make_stack().queue
    job = queue.submit(NewJob("fake", REQUEST)).job
    lease = queue.take("w1", ["fake"], 1.0)
    assert lease is not None
    assert not queue.cancel_requested(job.job_id)
    record = queue.cancel(job.job_id)
    assert record is not None
    assert (record.status, record.cancel_requested) == (JobStatus.running, True)
    assert queue.cancel_requested(job.job_id)
    assert queue.finish(lease, Outcome.cancelled())
    assert queue.get(job.job_id).status == JobStatus.cancelled  # type: ignore[union-attr]


def test_unregister_forgets_only_consumers_that_hold_nothing(
    redis_url: str, key_prefix: str
) -> None:
    """Consumers are a Redis notion (the in-process queue has none): Redis only."""
    queue = RedisQueue(Settings(redis_url=redis_url, key_prefix=key_prefix))
    stream = key_prefix + "stream:fake"
    queue.submit(NewJob("fake", REQUEST))
    queue.submit(NewJob("fake", REQUEST))
    done = queue.take("done", ["fake"], 1.0)
    held = queue.take("held", ["fake"], 1.0)
    assert done is not None
    assert held is not None
    assert queue.finish(done, Outcome.cancelled())
    queue.release(held)
    queue.unregister("done")
    queue.unregister("held")
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    consumers = {c["name"]: c["pending"] for c in client.xinfo_consumers(stream, "workers")}
    client.close()
    assert consumers == {"held": 1}  # kept: its handed-back entry is still reclaimable
    again = queue.take("next", ["fake"], 1.0)
    queue.close()
    assert again is not None
    assert again.job_id == held.job_id


def test_cancel_of_a_handed_back_job_ends_it_at_once(make_stack: StackFactory) -> None:
    queue = make_stack().queue
    job = queue.submit(NewJob("fake", REQUEST)).job
    lease = queue.take("w1", ["fake"], 1.0)
    assert lease is not None
    queue.release(lease)
    record = queue.cancel(job.job_id)
    assert record is not None
    assert record.status == JobStatus.cancelled
    assert (queue.counts().queued, queue.counts().pending) == (0, 0)
    assert queue.take("w2", ["fake"], 0.2) is None
    assert queue.counts().finished == {"cancelled": 1}


def test_the_embedded_queue_sweeps_ended_jobs_nobody_reads_again(monkeypatch) -> None:
    """Ended jobs, their delivery counts and idempotency keys go after their TTL on the
    queue's own clock (the worker's take), not only when someone reads them."""
    from service.queues import memory_queue
    from service.queues.memory_queue import MemoryQueue

    queue = MemoryQueue(Settings(result_ttl_seconds=5))
    ended = []
    for i in range(5):
        job = queue.submit(NewJob("fake", REQUEST, idempotency_key=f"k{i}")).job
        queue.cancel(job.job_id)
        ended.append(job.job_id)
    waiting = queue.submit(NewJob("other", REQUEST)).job
    clock = time.monotonic()
    monkeypatch.setattr(memory_queue.time, "monotonic", lambda: clock + 60)
    assert queue.take("worker", ["fake"], 0.0) is None  # the worker's poll sweeps
    assert set(queue._records) == {waiting.job_id}  # the unfinished job stays
    assert not queue._idempotency
    assert all(job_id not in queue._deliveries for job_id in ended)
    assert queue.get(waiting.job_id) is not None


def test_an_ended_job_drops_its_documents_at_once(make_stack: StackFactory) -> None:
    """A cancelled or finished job keeps its status and result for result_ttl_seconds but
    not its request: a 1.5 MB body must not sit in the store for a day (issue 18)."""
    queue = make_stack().queue
    big = ExplainRequest(question="Who?", documents=["x" * 15_000] * 100)
    cancelled = queue.submit(NewJob("fake", big)).job
    running = queue.submit(NewJob("fake", big)).job
    assert cancelled.request is not None
    queue.cancel(cancelled.job_id)
    lease = queue.take("w1", ["fake"], 1.0)
    assert lease is not None
    assert lease.job.request == big  # a live job still carries it to its worker
    assert queue.get(running.job_id).request == big  # type: ignore[union-attr]
    assert queue.finish(lease, Outcome.failed(ERROR))
    for job in (cancelled, running):
        record = queue.get(job.job_id)
        assert record is not None
        assert record.request is None
        assert record.status in (JobStatus.cancelled, JobStatus.failed)
        assert len(record.model_dump_json()) < 2_000
    if isinstance(queue, RedisQueue):
        client = queue._redis
        for job in (cancelled, running):
            assert client.memory_usage(queue._job_key(job.job_id)) < 4_000
