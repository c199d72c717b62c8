"""``textgenshap explain ... --server URL`` (``run_remote``) against the live gateway."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from service.client.remote_cli import add_remote_arguments, build_request, format_text, run_remote
from service.contract.results import ExplainResult
from service.viewer import examples
from tests.viewer.conftest import MODEL, free_port
from tests.viewer.sample import CHECKS, DOC0, fast_result, with_candidates


def _args(server: str, documents: Path, **overrides: object) -> argparse.Namespace:
    values: dict[str, object] = {
        "question": examples()[0]["question"],
        "documents": str(documents),
        "model": MODEL,
        "levels": "document,sentence",
        "budget": 64,
        "seed": 0,
        "masking": "remove",
        "max_new_tokens": 16,
        "fast": False,
        "checks": True,
        "json": False,
        "server": server,
        "html": None,
        "api_key": None,
    }
    values.update(overrides)
    return argparse.Namespace(**values)


@pytest.fixture
def documents_file(tmp_path: Path) -> Path:
    """An object with ``documents`` mixing titled passages and a bare string."""
    docs = examples()[0]["documents"]
    body = [{"title": d["title"], "text": d["text"]} for d in docs[:4]] + [docs[4]["text"]]
    path = tmp_path / "docs.json"
    path.write_text(json.dumps({"documents": body}), encoding="utf-8")
    return path


def test_json_output_and_html_report(
    gateway: str, documents_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    html = tmp_path / "report.html"
    code = run_remote(_args(gateway, documents_file, json=True, html=str(html)))
    out, err = capsys.readouterr()
    assert code == 0
    result = ExplainResult.model_validate_json(out)
    assert result.answer == "Wilhelm Conrad Röntgen"
    assert result.passage_ranking[0] == 2
    assert "coalition" in err  # the tqdm bar went to stderr
    assert f"report written to {html}" in err
    page = html.read_text(encoding="utf-8")
    assert page.count('<mark class="feat') == len(result.levels[-1].features)
    assert "List of Nobel laureates in Physics" in page


def test_text_output_summarises_answers_and_passages(
    gateway: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "docs.json"
    path.write_text(json.dumps([d["text"] for d in examples()[0]["documents"]]), encoding="utf-8")
    assert run_remote(_args(gateway, path, levels="document")) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "answer: Wilhelm Conrad Röntgen"
    assert lines[1] == "candidates:"
    assert lines[2].split()[0] == "+1.000"
    assert lines[2].endswith("Wilhelm Conrad Röntgen")
    assert "passage ranking: 2, " in "\n".join(lines)
    assert any(line.startswith("document (32 coalitions, exact):") for line in lines)


def test_a_dataset_record_gives_question_and_documents(
    gateway: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    record = tmp_path / "nq.json"
    record.write_text(json.dumps(examples()[0]), encoding="utf-8")  # has is_gold, answers, id
    assert run_remote(_args(gateway, record, question=None, levels="document")) == 0
    assert capsys.readouterr().out.startswith("answer: Wilhelm Conrad Röntgen\n")


def test_bad_input_exits_2_naming_the_problem(
    gateway: str, documents_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_remote(_args(gateway, documents_file, levels="sentence")) == 2
    assert "levels must be one of" in capsys.readouterr().err
    assert run_remote(_args(gateway, tmp_path / "missing.json")) == 2
    assert "cannot read documents from" in capsys.readouterr().err
    assert run_remote(_args(gateway, documents_file, budget=0)) == 2
    assert "error: budget: Input should be greater than or equal to" in capsys.readouterr().err


def test_service_errors_exit_1(
    gateway: str, documents_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_remote(_args(gateway, documents_file, model="no-such-model")) == 1
    assert "HTTP 422: model: unknown model 'no-such-model'" in capsys.readouterr().err
    nowhere = f"http://127.0.0.1:{free_port()}"
    assert run_remote(_args(nowhere, documents_file)) == 1
    assert f"cannot reach {nowhere}" in capsys.readouterr().err


def test_remote_arguments_parse_into_what_run_remote_reads() -> None:
    parser = argparse.ArgumentParser()
    add_remote_arguments(parser)
    args = parser.parse_args(["--server", "http://gw:8000", "--html", "r.html", "--api-key", "k"])
    assert (args.server, args.html, args.api_key) == ("http://gw:8000", "r.html", "k")
    assert vars(parser.parse_args([])) == {"server": None, "html": None, "api_key": None}


def test_text_output_lists_the_top_ten_candidates(sample_result: ExplainResult) -> None:
    lines = format_text(with_candidates(sample_result, 14)).splitlines()
    assert lines[2:4] == ["  +0.800  70.0%  paris", "  +0.400  30.0%  berlin"]
    assert lines[11] == "  +0.000   1.0%  rare 7"
    assert lines[12] == "  ... and 4 more (see --json)"
    assert lines[13] == "passage ranking: 0, 1"
    assert lines[14:16] == ["document (4 coalitions, exact):", "  +0.800 ± 0.050  doc 0  " + DOC0]


def test_the_explain_command_goes_remote_with_server(
    gateway: str, documents_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``textgenshap explain --server`` reaches run_remote through the real CLI parser
    and never loads a model in process."""
    from service import cli

    argv = [
        "explain", "--question", examples()[0]["question"], "--documents", str(documents_file),
        "--model", MODEL, "--budget", "64", "--server", gateway, "--json",
    ]  # fmt: skip
    code = cli.main(argv)
    out, _ = capsys.readouterr()
    assert code == 0
    result = ExplainResult.model_validate_json(out)
    assert result.answer == "Wilhelm Conrad Röntgen"
    assert result.stats.model == MODEL


def test_fast_goes_into_the_request_only_when_asked(documents_file: Path) -> None:
    assert build_request(_args("http://gw", documents_file, fast=True)).fast is True
    assert build_request(_args("http://gw", documents_file, fast=False)).fast is False
    assert build_request(_args("http://gw", documents_file)).fast is False


def test_checks_are_on_unless_turned_off_and_are_printed(
    documents_file: Path, sample_result: ExplainResult
) -> None:
    assert build_request(_args("http://gw", documents_file)).checks is True
    assert build_request(_args("http://gw", documents_file, checks=False)).checks is False
    lines = format_text(sample_result.model_copy(update={"checks": CHECKS})).splitlines()
    at = lines.index("passage ranking: 0, 1") + 1
    assert lines[at : at + 3] == [
        "checks on the model (the top passages removed, or alone):",
        "  without documents 0: 'Berlin' (changed), log p(answer) -2.50",
        "  only documents 0: 'paris' (same)",
    ]
    assert "checks" not in format_text(sample_result)


def test_a_fast_jobs_checks_say_they_ran_exact(sample_result: ExplainResult) -> None:
    lines = format_text(fast_result(sample_result)).splitlines()
    at = lines.index("checks on the model (the top passages removed, or alone):")
    assert lines[at + 1] == (
        "  (fast mode (approximate) scored the passages; these checks ran on the exact model, "
        "where fast mode gave the same answer on 5 of their 7 contexts)"
    )
    assert lines[at + 2] == "  without documents 0: 'Berlin' (changed), log p(answer) -2.50"
