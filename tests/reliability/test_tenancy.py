"""Tenancy: a job belongs to the API key that created it; any other key sees a 404
exactly like an unknown job, and Idempotency-Keys are scoped per API key. Both modes."""

from __future__ import annotations

from typing import Any

import pytest

from service.auth import hash_key
from tests.fakes import FakeEngine
from tests.service.conftest import Stack, StackFactory
from tests.service.payloads import check_result, explain_body

ALICE, BOB = "alice-secret-key", "bob-secret-key"


def keyed(**overrides: Any) -> dict[str, Any]:
    return {"api_keys": f"{hash_key(ALICE)},{hash_key(BOB)}", **overrides}


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def submit_as(stack: Stack, key: str, body: dict[str, Any], **headers: str) -> str:
    response = stack.client.post("/explain", json=body, headers={**auth(key), **headers})
    assert response.status_code == 202, response.text
    return str(response.json()["job_id"])


@pytest.mark.parametrize(
    ("method", "path"), [("POST", "/explain"), ("GET", "/jobs/x"), ("DELETE", "/jobs/x")]
)
@pytest.mark.parametrize("headers", [{}, {"X-API-Key": "wrong"}, {"Authorization": "Bearer no"}])
def test_missing_or_unknown_key_is_401(
    make_stack: StackFactory, method: str, path: str, headers: dict[str, str]
) -> None:
    stack = make_stack(**keyed())
    response = stack.client.request(method, path, json=explain_body(), headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json() == {
        "detail": "missing or unknown API key (send Authorization: Bearer <key> or X-API-Key)"
    }
    assert stack.queue.counts().queued == 0


def test_another_keys_job_is_404_like_an_unknown_one(make_stack: StackFactory) -> None:
    stack = make_stack(**keyed())
    job_id = submit_as(stack, ALICE, explain_body())
    for method in ("GET", "DELETE"):
        theirs = stack.client.request(method, f"/jobs/{job_id}", headers=auth(BOB))
        unknown = stack.client.request(method, "/jobs/0123", headers=auth(BOB))
        assert (theirs.status_code, unknown.status_code) == (404, 404)
        assert theirs.json()["detail"] == unknown.json()["detail"].replace("0123", job_id)
    mine = stack.client.get(f"/jobs/{job_id}", headers={"X-API-Key": ALICE})
    assert (mine.status_code, mine.json()["status"]) == (200, "queued")  # BOB did not cancel


def test_the_owner_reads_the_result_and_cancels(make_stack: StackFactory) -> None:
    stack = make_stack(**keyed())
    stack.start_worker(FakeEngine("fake"))
    body = explain_body()
    job_id = submit_as(stack, ALICE, body)
    stack.client.headers.update(auth(ALICE))
    view = stack.wait(job_id)
    assert view["status"] == "succeeded"
    check_result(view["result"], body)
    assert stack.client.delete(f"/jobs/{job_id}").status_code == 409  # already finished


def test_idempotency_keys_are_scoped_per_api_key(make_stack: StackFactory) -> None:
    stack = make_stack(**keyed())
    body = explain_body()
    first = submit_as(stack, ALICE, body, **{"Idempotency-Key": "same"})
    again = submit_as(stack, ALICE, body, **{"Idempotency-Key": "same"})
    other = submit_as(stack, BOB, body, **{"Idempotency-Key": "same"})
    changed = submit_as(stack, BOB, explain_body(seed=5), **{"Idempotency-Key": "other"})
    assert first == again
    assert len({first, other, changed}) == 3
    assert stack.client.get(f"/jobs/{other}", headers=auth(ALICE)).status_code == 404


def test_without_keys_everyone_is_the_anonymous_owner(make_stack: StackFactory) -> None:
    stack = make_stack()
    job_id = stack.submit(explain_body())
    assert stack.client.get(f"/jobs/{job_id}", headers=auth("anything")).status_code == 200
    assert stack.queue.get(job_id).owner == "anonymous"  # type: ignore[union-attr]


def test_jobs_are_stored_under_the_key_hash_never_the_key(make_stack: StackFactory) -> None:
    stack = make_stack(**keyed())
    record = stack.queue.get(submit_as(stack, ALICE, explain_body()))
    assert record is not None
    assert record.owner == hash_key(ALICE)
    assert ALICE not in record.model_dump_json()
