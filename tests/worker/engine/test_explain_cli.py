"""``textgenshap explain`` end to end on the tiny Llama."""

from __future__ import annotations

import json

import pytest

from service import cli
from service.contract.results import ExplainResult
from service.contract.schemas import ExplainRequest
from worker.engine.loading.registry import load_engine
from worker.shapley.checks import context_checks
from worker.shapley.coalitions import CoalitionCache
from worker.shapley.segment import document_units
from worker.shapley.units import Document

DOCS = {
    "documents": [
        "The report was written by Ada. It was long.",
        {"title": "Author", "text": "The author is Ada Lovelace. She was a mathematician."},
        {"text": "Cats sleep a lot."},
    ],
    "ignored": True,
}


def build_documents() -> list:
    """DOCS as the request parses them."""
    return ExplainRequest(question="q", documents=DOCS["documents"]).document_objects()


@pytest.fixture
def documents(tmp_path):
    path = tmp_path / "docs.json"
    path.write_text(json.dumps(DOCS))
    return path


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(["explain", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def explain_json(capsys, documents, *extra: str) -> ExplainResult:
    """One document-level job on the tiny Llama, printed as JSON, with ``extra`` options."""
    code, out, _ = run(
        capsys, "--question", "Who wrote it?", "--documents", str(documents),
        "--model", "tiny-llama", "--budget", "8", "--levels", "document", "--json",
        "--max-new-tokens", "4", *extra,
    )  # fmt: skip
    assert code == 0
    return ExplainResult.model_validate_json(out)


def test_json_output_is_exactly_the_result_object(capsys, documents):
    code, out, _ = run(
        capsys, "--question", "Who wrote it?", "--documents", str(documents),
        "--model", "tiny-llama", "--budget", "8", "--levels", "document", "--json",
        "--max-new-tokens", "4",
    )  # fmt: skip
    assert code == 0
    result = ExplainResult.model_validate_json(out)
    assert out.strip() == result.model_dump_json()
    assert result.stats.model == "tiny-llama"
    assert result.stats.attention_backend == "sdpa"
    assert sorted(result.passage_ranking) == [0, 1, 2]
    assert [f.document for f in result.levels[0].features] == [0, 1, 2]
    assert [(c.kind, c.documents) for c in result.checks] == [
        ("remove", result.passage_ranking[:1]),
        ("remove", result.passage_ranking[:2]),
        ("keep", result.passage_ranking[:1]),
        ("keep", result.passage_ranking[:2]),
    ]


def test_text_output_lists_answers_and_passages(capsys, documents):
    code, out, _ = run(
        capsys, "--question", "Who wrote it?", "--documents", str(documents),
        "--model", "tiny-llama", "--budget", "8", "--max-new-tokens", "2",
    )  # fmt: skip
    assert code == 0
    assert out.startswith("Answer: ")
    assert "Candidates:" in out
    assert "Top passages:" in out
    assert "[2] Author" in out
    top = int(out.split("Top passages:\n  1. [")[1].split("]")[0])  # numbered from 1
    assert f"  without documents {top}: " in out  # the checks number documents the same way
    assert f"  only documents {top}: " in out


def test_checks_can_be_turned_off(capsys, documents):
    assert explain_json(capsys, documents, "--no-checks").checks == []


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"documents": []}, "documents: List should have at least 1 item"),
        ({"docs": ["x"]}, "expected a list of documents or an object with 'documents'"),
        (["ok", {"title": "T"}], "documents.1.DocumentIn.text: Field required"),
    ],
)
def test_invalid_documents_exit_2_with_a_clear_message(capsys, tmp_path, payload, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(payload))
    code, out, err = run(capsys, "--question", "Q?", "--documents", str(path))
    assert (code, out) == (2, "")
    assert message in err


def test_bad_levels_exit_2(capsys, documents):
    code, _, err = run(
        capsys, "--question", "Q?", "--documents", str(documents), "--levels", "sentence"
    )
    assert code == 2
    assert "levels must be one of" in err


def test_html_report_in_process(capsys, documents, tmp_path):
    html = tmp_path / "report.html"
    code, out, _ = run(
        capsys, "--question", "Who wrote it?", "--documents", str(documents),
        "--model", "tiny-llama", "--budget", "8", "--levels", "document,sentence",
        "--max-new-tokens", "2", "--json", "--html", str(html),
    )  # fmt: skip
    assert code == 0
    result = ExplainResult.model_validate_json(out)
    page = html.read_text(encoding="utf-8")
    assert page.count('<mark class="feat') == len(result.levels[-1].features)
    assert "The author is Ada Lovelace." in page


def test_fast_mode_is_reported(capsys, documents):
    result = explain_json(capsys, documents, "--fast")
    assert result.stats.fast is True
    assert result.stats.coalitions > 0
    # the checks ran on the exact engine: the same ranking's checks on an exact session
    engine = load_engine("tiny-llama", device="cpu")
    docs = [Document(d.text, d.title) for d in build_documents()]
    exact = CoalitionCache(engine.open_session("Who wrote it?", docs, max_new_tokens=4))
    expected = context_checks(exact, document_units(docs), result.passage_ranking, result.answer)
    assert [(c.kind, c.documents, c.answer) for c in result.checks] == [
        (c.kind, c.documents, c.answer) for c in expected
    ]
    for got, want in zip(result.checks, expected, strict=True):
        assert got.logprob_drop == pytest.approx(want.logprob_drop, abs=1e-4)
    agreed = result.stats.fast_agreement
    assert agreed is not None
    assert agreed.coalitions == 5  # the full context, 2 removals and 2 keeps of 3 documents
    assert agreed.answers_agree * 5 == pytest.approx(round(agreed.answers_agree * 5))
    assert agreed.logprob_mean_abs_diff is not None
    assert agreed.logprob_mean_abs_diff >= 0.0
    code, out, _ = run(
        capsys, "--question", "Who wrote it?", "--documents", str(documents),
        "--model", "tiny-llama", "--budget", "8", "--max-new-tokens", "2", "--fast",
    )  # fmt: skip
    assert code == 0
    assert out.rstrip().endswith("fast mode (approximate)")
    assert "these checks ran on the exact model, where fast mode gave the same answer on " in out
    assert " of their 5 contexts)" in out


def test_fast_mode_on_t5_is_an_engine_error(capsys, documents):
    code, _, err = run(
        capsys, "--question", "Who wrote it?", "--documents", str(documents),
        "--model", "tiny-t5", "--budget", "8", "--fast",
    )  # fmt: skip
    assert code == 1
    assert "FastModeUnsupported" in err
    assert "decoder-only" in err


def test_a_line_of_the_nq_data_is_a_documents_file(capsys, tmp_path):
    """Document records keep only title and text (README: other keys are ignored)."""
    path = tmp_path / "nq.json"
    record = {
        "question": "who wrote it",
        "answers": ["Ada"],
        "documents": [
            {"title": "Report", "text": "The report was written by Ada.", "is_gold": True},
            {"title": "Cats", "text": "Cats sleep a lot.", "is_gold": False, "id": "7"},
        ],
    }
    path.write_text(json.dumps(record))
    code, out, err = run(
        capsys, "--question", "Who wrote it?", "--documents", str(path),
        "--model", "tiny-llama", "--budget", "4", "--levels", "document", "--json",
        "--max-new-tokens", "2",
    )  # fmt: skip
    assert code == 0, err
    assert sorted(ExplainResult.model_validate_json(out).passage_ranking) == [0, 1]
