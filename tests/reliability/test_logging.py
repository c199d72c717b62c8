"""No document text (nor the question) reaches the logs at INFO, whatever happens to the
job: success, an engine error quoting the documents, a rejected request."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from tests.fakes import FakeEngine
from tests.service.conftest import StackFactory
from tests.service.payloads import explain_body

SECRET = "Zanzibar-7731 is the capital of France"  # found nowhere else


class QuotingEngine(FakeEngine):
    """Fails the way tokenizers do: the error message quotes the input."""

    def open_session(self, question: str, documents: Any, **_: Any) -> Any:
        raise RuntimeError(f"cannot tokenize {question!r} / {documents[0].text!r}")


def secret_body(model: str = "fake") -> dict[str, Any]:
    return explain_body(
        question=f"Where is {SECRET}?", documents=[SECRET, {"title": SECRET, "text": SECRET}],
        model=model,
    )  # fmt: skip


def test_no_document_text_in_logs_at_info(
    make_stack: StackFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    stack = make_stack(max_deliveries=2, max_documents=2)
    stack.start_worker(FakeEngine("fake"))
    stack.start_worker(QuotingEngine("fake-quoting"))
    ok = stack.wait(stack.submit(secret_body()))
    failed = stack.wait(stack.submit(secret_body("fake-quoting")))
    too_many = stack.client.post("/explain", json={**secret_body(), "documents": [SECRET] * 3})
    assert (ok["status"], failed["status"], too_many.status_code) == ("succeeded", "failed", 422)
    assert SECRET in failed["error"]["message"]  # the owner still learns what went wrong
    logged = "\n".join(r.getMessage() for r in caplog.records if r.levelno >= logging.INFO)
    assert f"job {ok['job_id']}: succeeded" in logged
    assert f"job {failed['job_id']}: delivery 2 failed: RuntimeError" in logged
    assert "Zanzibar" not in logged
