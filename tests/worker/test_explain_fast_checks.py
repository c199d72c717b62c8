"""A fast-mode job's checks run on the exact engine, and the job reports how far fast mode
was from it on those coalitions: on rule-based fakes whose disagreement is known."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pytest

from service.contract.schemas import ExplainRequest
from tests.fakes import FakeOracle
from worker.explain import run_explanation
from worker.shapley.checks import agreement, check_plans, context_checks
from worker.shapley.coalitions import CoalitionCache
from worker.shapley.segment import document_units
from worker.shapley.units import Document, Unit

DOCUMENTS = [
    "Paris is the capital of France. It has the Eiffel Tower.",
    "Berlin is the capital of Germany.",
    "Bananas are yellow.",
    "Rome is the capital of Italy.",
]
ROME = "capital of Italy"


class LoneDocumentSaysRome(FakeOracle):
    """An approximate session: right everywhere except on coalitions that keep exactly one
    unit, where it sees the Rome passage whatever was kept (a stale cache)."""

    def context(self, units: list[Unit], mask: npt.NDArray[np.bool_]) -> str:  # type: ignore[override]
        return ROME if int(np.sum(mask)) == 1 else super().context(units, mask)


def make_request(**fields: object) -> ExplainRequest:
    body: dict[str, object] = {
        "question": "What is the capital of France?",
        "documents": DOCUMENTS,
        "levels": ["document"],
        "budget": 16,
        "fast": True,
    }
    body.update(fields)
    return ExplainRequest.model_validate(body)


def docs() -> list[Document]:
    return [Document(text) for text in DOCUMENTS]


def test_agreement_counts_the_coalitions_whose_answers_differ() -> None:
    units = document_units(docs())
    exact = CoalitionCache(FakeOracle("q", docs()))
    stale = CoalitionCache(LoneDocumentSaysRome("q", docs()))
    masks = check_plans(4, [0, 1, 2, 3])[1]  # full; remove 1, 2, 3; keep 1, 2, 3
    found = agreement(stale, exact, units, masks, "Paris.")
    assert found.coalitions == 7
    assert found.answers_agree == pytest.approx(6 / 7)  # keep-1: "Rome" against "Paris."
    # the fake scores log 0.9 for its own answer, log 0.1 otherwise, minus 0.001 per word:
    # keep-1 shows "[1] : Paris is ... Tower." (13 words) exactly, "capital of Italy" (3)
    # stale; remove-3 keeps the Rome passage alone: both say Rome, from 8 words and 3
    keep1 = (math.log(0.9) - 0.013) - (math.log(0.1) - 0.003)
    remove3 = 0.008 - 0.003
    assert found.logprob_mean_abs_diff == pytest.approx((keep1 + remove3) / 7, abs=1e-9)
    empty = agreement(stale, exact, units, masks, "")
    assert empty.logprob_mean_abs_diff is None


def test_a_fast_job_checks_on_the_exact_session_and_reports_its_agreement() -> None:
    req = make_request()
    fast = LoneDocumentSaysRome(req.question, docs())
    fast.stats.fast = True
    opened: list[FakeOracle] = []

    def exact_session() -> FakeOracle:
        opened.append(FakeOracle(req.question, docs()))
        return opened[-1]

    result = run_explanation(req, fast, model="fake", exact_session=exact_session)  # type: ignore[arg-type]
    assert len(opened) == 1
    ranking = result.passage_ranking
    assert ranking[0] == 0
    # the receipt is the exact model's: keeping the top passage alone keeps "Paris."
    expected = context_checks(CoalitionCache(FakeOracle("q", docs())), document_units(docs()),
                              ranking, result.answer)  # fmt: skip
    assert [(c.kind, c.documents, c.answer, c.logprob_drop) for c in result.checks] == [
        (c.kind, c.documents, c.answer, c.logprob_drop) for c in expected
    ]
    keep1 = result.checks[3]
    assert (keep1.kind, keep1.answer, keep1.answer_changed) == ("keep", "Paris.", False)
    agreed = result.stats.fast_agreement
    assert agreed is not None
    assert (agreed.coalitions, agreed.answers_agree) == (7, pytest.approx(6 / 7))
    # both sessions' work is counted, in the result and in the job session's own counts
    # (which the worker's metrics read)
    exact = opened[0]
    own = len(fast.coalitions_seen)  # the fake counts one pass per coalition it is sent
    assert exact.stats.forward_passes > 0
    assert result.stats.forward_passes == own + exact.stats.forward_passes
    assert fast.stats.forward_passes == result.stats.forward_passes
    assert fast.stats.batch_sizes[-len(exact.stats.batch_sizes) :] == exact.stats.batch_sizes
    distinct = len(set(fast.coalitions_seen)) + len(set(exact.coalitions_seen))
    assert result.stats.coalitions == distinct
    assert result.stats.fast is True


def test_no_checks_no_exact_session_and_no_agreement() -> None:
    req = make_request(checks=False)
    opened: list[int] = []

    def exact_session() -> FakeOracle:
        opened.append(1)
        return FakeOracle(req.question, docs())

    result = run_explanation(req, FakeOracle(req.question, docs()), model="fake",
                             exact_session=exact_session)  # type: ignore[arg-type]  # fmt: skip
    assert opened == []
    assert result.stats.fast_agreement is None
    exact_job = run_explanation(make_request(fast=False), FakeOracle(req.question, docs()),
                                model="fake")  # fmt: skip
    assert exact_job.stats.fast_agreement is None
