"""Limits enforced before enqueueing (422 naming the field, 429 with Retry-After) and the
worker's token cap, in both modes. Body size (413) is covered in tests/service."""

from __future__ import annotations

import pytest

from tests.fakes import FakeEngine
from tests.reliability.test_tenancy import ALICE, BOB, auth, keyed
from tests.service.conftest import StackFactory
from tests.service.payloads import explain_body


def rejected(metrics: str, reason: str) -> float:
    line = f'textgenshap_rejected_requests_total{{reason="{reason}"}} '
    return next((float(x.split()[-1]) for x in metrics.splitlines() if x.startswith(line)), 0.0)


def test_submissions_over_the_rate_are_429_per_key(make_stack: StackFactory) -> None:
    stack = make_stack(**keyed(rate_limit_per_minute=6, rate_limit_burst=2))
    codes = [
        stack.client.post("/explain", json=explain_body(), headers=auth(ALICE)).status_code
        for _ in range(3)
    ]
    assert codes == [202, 202, 429]
    refused = stack.client.post("/explain", json=explain_body(), headers=auth(ALICE))
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["retry-after"]) <= 10  # one token per 10 s
    assert refused.json()["detail"].startswith("rate limit: at most 6 submissions per minute")
    bob = stack.client.post("/explain", json=explain_body(), headers=auth(BOB))
    assert bob.status_code == 202  # another key has its own bucket
    assert rejected(stack.client.get("/metrics").text, "rate_limit") == 2.0
    assert stack.queue.counts().queued == 3


def test_the_rate_limit_applies_before_validation(make_stack: StackFactory) -> None:
    stack = make_stack(**keyed(rate_limit_per_minute=1, rate_limit_burst=1))
    first = stack.client.post("/explain", json={"question": ""}, headers=auth(ALICE))
    second = stack.client.post("/explain", json={"question": ""}, headers=auth(ALICE))
    assert (first.status_code, second.status_code) == (422, 429)


def test_a_body_that_is_not_json_is_authenticated_and_rate_limited_first(
    make_stack: StackFactory,
) -> None:
    """FastAPI decodes JSON before it runs dependencies; a broken body must still meet the
    key check (401) and the rate limit (429) before its 422."""
    stack = make_stack(**keyed(rate_limit_per_minute=1, rate_limit_burst=1))
    broken = {"content-type": "application/json"}
    anonymous = stack.client.post("/explain", content=b'{"question": ', headers=broken)
    assert anonymous.status_code == 401
    codes = [
        stack.client.post("/explain", content=b"{oops", headers={**broken, **auth(ALICE)})
        for _ in range(2)
    ]
    assert [c.status_code for c in codes] == [422, 429]
    assert codes[0].json()["detail"][0]["type"] == "json_invalid"
    assert rejected(stack.client.get("/metrics").text, "rate_limit") == 1.0


def test_unfinished_jobs_per_key_are_capped(make_stack: StackFactory) -> None:
    stack = make_stack(**keyed(max_active_jobs_per_key=2))
    first = stack.client.post("/explain", json=explain_body(), headers=auth(ALICE)).json()
    stack.client.post("/explain", json=explain_body(seed=1), headers=auth(ALICE))
    refused = stack.client.post("/explain", json=explain_body(seed=2), headers=auth(ALICE))
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "7"
    assert refused.json() == {
        "detail": "too many unfinished jobs for this API key (max_active_jobs_per_key=2); "
        "wait for some to finish or cancel them"
    }
    assert stack.client.post("/explain", json=explain_body(), headers=auth(BOB)).status_code == 202
    assert stack.client.delete(f"/jobs/{first['job_id']}", headers=auth(ALICE)).status_code == 200
    again = stack.client.post("/explain", json=explain_body(seed=2), headers=auth(ALICE))
    assert again.status_code == 202  # the cancelled job freed its slot
    assert rejected(stack.client.get("/metrics").text, "active_jobs") == 1.0


def test_finished_jobs_free_their_slots(make_stack: StackFactory) -> None:
    stack = make_stack(max_active_jobs_per_key=1)
    stack.start_worker(FakeEngine("fake"))
    for seed in range(3):
        assert stack.wait(stack.submit(explain_body(seed=seed)))["status"] == "succeeded"


def test_a_replayed_idempotent_submit_takes_no_extra_slot(make_stack: StackFactory) -> None:
    stack = make_stack(max_active_jobs_per_key=2)
    first = stack.submit(explain_body(), **{"Idempotency-Key": "k"})
    assert stack.submit(explain_body(), **{"Idempotency-Key": "k"}) == first
    stack.submit(explain_body(seed=1))  # the second slot is still free
    assert stack.client.post("/explain", json=explain_body(seed=2)).status_code == 429


@pytest.mark.parametrize(
    ("limits", "change", "field", "message"),
    [
        (
            {"max_levels": 2},
            {"levels": ["document", "sentence", "word"]},
            "levels",
            "levels: 3 levels requested; this deployment allows at most max_levels=2",
        ),
        (
            {"max_new_tokens": 8},
            {"max_new_tokens": 9},
            "max_new_tokens",
            "max_new_tokens: max_new_tokens 9 is over the cap max_new_tokens=8",
        ),
        (  # issue 18: a job that could outgrow the worker's unit cap is refused at submit
            {"max_units_per_level": 50},
            {"documents": ["The cat sat. " * 60, "Paris is in France."]},
            "levels",
            "levels: the sentence level could have up to 61 units (refine top_k k=2 over "
            "these documents), over max_units_per_level=50; ask for fewer levels, a smaller "
            "refine k, or shorter documents",
        ),
    ],
)
def test_deployment_caps_on_levels_and_answer_length(
    make_stack: StackFactory, limits: dict[str, int], change: dict[str, object], field: str,
    message: str,
) -> None:  # fmt: skip
    stack = make_stack(**limits)
    response = stack.client.post("/explain", json=explain_body(**change))
    assert response.status_code == 422
    assert response.json()["detail"] == [
        {"loc": ["body", field], "msg": message, "type": "value_error"}
    ]
    assert stack.queue.counts().queued == 0


def test_the_worker_fails_a_job_over_the_token_cap(make_stack: StackFactory) -> None:
    stack = make_stack(max_tokens=20, max_deliveries=3)
    engine = FakeEngine("fake")
    stack.start_worker(engine)
    view = stack.wait(stack.submit(explain_body()))  # 7 question + 30 document words
    assert (view["status"], view["deliveries"]) == ("failed", 1)
    assert view["error"] == {
        "type": "ContextTooLong",
        "message": "the prompt needs 37 tokens but the model accepts at most 20; "
        "send fewer or shorter documents",
    }
    assert engine.sessions == []
    short = explain_body(documents=["Paris is the capital of France."])
    assert stack.wait(stack.submit(short))["status"] == "succeeded"


def test_a_body_that_is_not_utf8_is_422_not_400(make_stack: StackFactory) -> None:
    stack = make_stack()
    response = stack.client.post(
        "/explain", content=b"\x04\xff-\xfeb", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json() == {
        "detail": [
            {
                "loc": ["body"],
                "msg": "body: the body is not valid JSON text (UTF-8)",
                "type": "json_invalid",
            }
        ]
    }


def test_405_lists_every_method_of_the_path(make_stack: StackFactory) -> None:
    response = make_stack().client.request("PUT", "/jobs/abc")
    assert response.status_code == 405
    assert response.headers["allow"] == "DELETE, GET"


def test_gateways_sharing_redis_share_each_keys_limits(redis_url: str, key_prefix: str) -> None:
    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.contract.settings import Settings
    from service.queues.redis_queue import RedisQueue

    settings = Settings(
        redis_url=redis_url, key_prefix=key_prefix, default_model="fake",
        **keyed(rate_limit_per_minute=6, rate_limit_burst=3, max_active_jobs_per_key=2),
    )  # fmt: skip
    queues = [RedisQueue(settings), RedisQueue(settings)]
    gateways = [TestClient(create_app(settings, queue)) for queue in queues]
    answers = [
        gateways[i % 2].post("/explain", json=explain_body(seed=i), headers=auth(ALICE))
        for i in range(4)
    ]
    assert [a.status_code for a in answers] == [202, 202, 429, 429]
    assert answers[2].json()["detail"].startswith("too many unfinished jobs")  # 2 active
    assert answers[3].json()["detail"].startswith("rate limit")  # 3 tokens spent on 2 gateways
    assert gateways[1].post("/explain", json=explain_body(), headers=auth(BOB)).status_code == 202
    for queue in queues:
        queue.close()
