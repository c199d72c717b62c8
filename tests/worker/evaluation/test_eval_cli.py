"""``textgenshap eval`` end to end with the gold-aware fake engine: files, values, resume."""

import gzip
import json
from pathlib import Path

import pytest

from service.cli import main

DATA = Path(__file__).parent / "data"
NQ = DATA / "nq-10docs-6.jsonl.gz"
MIRACL = DATA / "miracl-7langs-14.jsonl.gz"
GOLD = "py:tests.worker.evaluation.eval_fakes:make_gold_engine"
FAKE = "py:tests.fakes:make_fake_engine"


def _run(*extra: str) -> int:
    return main(["eval", "--budget", "32", *extra])


def _ids(out: Path) -> list[str]:
    return [json.loads(line)["id"] for line in (out / "results.jsonl").read_text().splitlines()]


def test_nq_run_writes_results_summary_and_tables(tmp_path: Path) -> None:
    out = tmp_path / "nq"
    assert _run("--data", str(NQ), "--limit", "4", "--model", GOLD, "--out", str(out)) == 0
    assert len(_ids(out)) == 4
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n"] == 4
    assert summary["accuracy"]["full_context"]["mean"] == 1.0
    assert summary["accuracy"]["full_context"]["n"] == 4
    every = summary["strata"]["all"]
    for name in ("shapley-answer", "shapley-logprob", "banzhaf-answer", "loo"):
        assert every["methods"][name]["recall@1"]["mean"] == 1.0, name
        assert every["methods"][name]["flip@1"]["mean"] == 1.0, name
    gold_first = [json.loads(x)["relevant"] == [0] for x in (out / "results.jsonl").open()]
    assert every["methods"]["given"]["recall@1"]["mean"] == sum(gold_first) / 4
    assert every["paired"]["shapley-answer"]["difference"]["recall@1"]["mean"] == 0.0
    assert summary["config"]["budget"] == 32
    assert summary["unavailable"]["contextcite-64"]  # fakes have no Hugging Face model
    markdown = (out / "summary.md").read_text()
    assert "| shapley-logprob | 4 | 1.00 [1.00, 1.00] |" in markdown
    assert "Paired with `loo`" in markdown


def test_summarize_only_recomputes_the_tables_from_the_records(tmp_path: Path) -> None:
    out = tmp_path / "nq"
    assert _run("--data", str(NQ), "--limit", "3", "--model", GOLD, "--out", str(out)) == 0
    first = json.loads((out / "summary.json").read_text())
    (out / "summary.json").unlink()
    assert main(["eval", "--summarize-only", "--out", str(out)]) == 0
    assert json.loads((out / "summary.json").read_text()) == first
    assert main(["eval", "--summarize-only", "--out", str(tmp_path / "none")]) == 2
    assert main(["eval", "--out", str(out)]) == 2  # running needs --data


def test_rerun_skips_done_questions_and_extends_the_limit(tmp_path: Path, capsys) -> None:
    out = tmp_path / "nq"
    assert _run("--data", str(NQ), "--limit", "2", "--model", GOLD, "--out", str(out)) == 0
    first = (out / "results.jsonl").read_text()
    assert _run("--data", str(NQ), "--limit", "2", "--model", GOLD, "--out", str(out)) == 0
    assert (out / "results.jsonl").read_text() == first  # nothing re-evaluated
    capsys.readouterr()
    assert _run("--data", str(NQ), "--limit", "3", "--model", GOLD, "--out", str(out)) == 0
    bar = capsys.readouterr().err
    assert "2/3" in bar  # the progress bar counts the done questions against the whole run
    assert "/1 " not in bar
    assert (out / "results.jsonl").read_text().startswith(first)
    assert len(_ids(out)) == 3
    assert len(set(_ids(out))) == 3


def test_resume_with_other_settings_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "nq"
    assert _run("--data", str(NQ), "--limit", "1", "--model", GOLD, "--out", str(out)) == 0
    args = ["eval", "--budget", "64", "--data", str(NQ), "--limit", "1"]
    assert main([*args, "--model", GOLD, "--out", str(out)]) == 2
    assert len(_ids(out)) == 1


def test_resume_with_more_methods_adds_them_to_the_questions_still_to_run(
    tmp_path: Path,
) -> None:
    """A method added mid-run runs from the next question on; the run file says after how
    many records, and the report counts each method's own N. Fewer methods, or more methods
    with another setting changed, are refused."""
    out = tmp_path / "nq"
    common = ["--data", str(NQ), "--model", GOLD, "--out", str(out)]
    assert _run(*common, "--limit", "2", "--methods", "given", "loo") == 0
    more = ["--methods", "given", "loo", "contextcite-engine-32"]
    assert main(["eval", "--budget", "64", *common, "--limit", "3", *more]) == 2
    assert _run(*common, "--limit", "3", "--methods", "given") == 2
    assert _run(*common, "--limit", "3", "--methods", "given", "contextcite-engine-32") == 2
    assert _run(*common, "--limit", "3", *more) == 0
    assert _run(*common, "--limit", "4", *more) == 0  # resumes as the extended run
    run = json.loads((out / "run.json").read_text())
    assert run["methods"] == ["given", "loo", "contextcite-engine-32"]
    assert run["methods_added"] == [{"methods": ["contextcite-engine-32"], "after_records": 2}]
    records = [json.loads(line) for line in (out / "results.jsonl").open()]
    assert ["contextcite-engine-32" in r["methods"] for r in records] == [0, 0, 1, 1]
    summary = json.loads((out / "summary.json").read_text())
    cite = summary["strata"]["all"]["methods"]["contextcite-engine-32"]
    assert cite["recall@1"]["n"] == 2
    assert summary["strata"]["all"]["methods"]["loo"]["recall@1"]["n"] == 4
    assert cite["recall@1"]["mean"] == 1.0  # the gold engine: the gold passage alone
    for record in records[2:]:  # a stratum without the added method's questions
        record["full_correct"] = False
    (out / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    assert main(["eval", "--summarize-only", "--out", str(out)]) == 0
    correct = json.loads((out / "summary.json").read_text())["strata"]["full_correct"]
    assert correct["n"] == 2
    assert "contextcite-engine-32" not in correct["methods"]
    assert "contextcite-engine-32" not in correct["paired"]


def test_runs_recorded_before_the_prompt_style_resume_only_as_plain(tmp_path: Path) -> None:
    out = tmp_path / "nq"
    assert _run("--data", str(NQ), "--limit", "1", "--model", GOLD, "--out", str(out)) == 0
    run = json.loads((out / "run.json").read_text())
    assert run["extra"]["prompt_style"] == "short"  # the default
    del run["extra"]["prompt_style"]  # as the earlier records were written
    (out / "run.json").write_text(json.dumps(run))
    common = ["--data", str(NQ), "--limit", "2", "--model", GOLD, "--out", str(out)]
    assert _run(*common) == 2  # the default prompt is not the one those records used
    assert _run(*common, "--prompt-style", "plain") == 0
    assert len(_ids(out)) == 2


def test_miracl_run_with_qrels_reports_languages_and_recall(tmp_path: Path) -> None:
    with gzip.open(MIRACL, "rt") as handle:
        first = json.loads(handle.readline())
    qrels = tmp_path / "qrels.txt"
    qrels.write_text(f"{first['id']} Q0 {first['docids'][3]} 1\n")
    out = tmp_path / "miracl"
    args = ["--data", str(MIRACL), "--model", FAKE, "--out", str(out), "--qrels", str(qrels)]
    assert _run(*args, "--methods", "given", "loo", "shapley-answer") == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n"] == 14
    assert set(summary["by_lang"]) == {"ar", "de", "en", "es", "ja", "sw", "zh"}
    assert summary["by_lang"]["ja"]["relevant"]["n"] == 1
    assert summary["by_lang"]["en"]["all"]["abstention"]["mean"] == 1.0  # "unknown"
    # one question has a judged passage, at position 3: the given order finds it at k=5
    given = summary["strata"]["all"]["methods"]["given"]
    assert (given["recall@1"]["mean"], given["recall@1"]["n"]) == (0.0, 1)
    assert given["recall@5"]["mean"] == 1.0
    assert summary["accuracy"]["full_context"]["n"] == 0


def test_missing_data_file_fails_loudly(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        _run("--data", str(tmp_path / "none.jsonl"), "--model", FAKE, "--out", str(tmp_path))


def test_the_estimator_reaches_the_explanations_and_old_auto_runs_are_not_mixed(
    tmp_path: Path,
) -> None:
    """A run recorded before ``auto`` meant ``layered`` (no ``extra.auto``) is refused, so
    no run mixes two defaults; one recorded with today's ``auto`` resumes."""
    out = tmp_path / "nq"
    common = ["--data", str(NQ), "--model", GOLD, "--out", str(out), "--budget", "24"]
    assert _run(*common, "--limit", "1", "--estimator", "layered") == 0
    record = json.loads((out / "results.jsonl").read_text().splitlines()[0])
    assert json.loads((out / "run.json").read_text())["estimator"] == "layered"
    assert "layered" in json.dumps(record)  # the level's estimator, as recorded
    assert _run(*common, "--limit", "2") == 2  # auto is another setting: refused
    older = tmp_path / "older"
    assert _run(*common[:-4], "--out", str(older), "--limit", "1") == 0
    run = json.loads((older / "run.json").read_text())
    assert run["estimator"] == "auto"
    assert run["extra"]["auto"] == "layered"
    assert _run(*common[:-4], "--out", str(older), "--limit", "2") == 0
    del run["estimator"], run["extra"]["auto"]  # as runs were written before both
    (older / "run.json").write_text(json.dumps(run))
    assert _run(*common[:-4], "--out", str(older), "--limit", "3") == 2


def test_a_run_recorded_before_layered_spent_coalitions_on_boundaries_is_not_mixed(
    tmp_path: Path,
) -> None:
    """``layered`` gained the ranking's boundary coalitions (worker/shapley/boundary.py):
    a run whose ``run.json`` has no ``extra.layered`` ran the design before it and is
    refused; one recorded with today's design resumes."""
    out = tmp_path / "nq"
    common = ["--data", str(NQ), "--model", GOLD, "--out", str(out), "--budget", "24"]
    assert _run(*common, "--limit", "1") == 0
    run = json.loads((out / "run.json").read_text())
    assert run["extra"]["layered"] == "layers, boundaries, middle"
    assert _run(*common, "--limit", "2") == 0
    del run["extra"]["layered"]
    (out / "run.json").write_text(json.dumps(run))
    assert _run(*common, "--limit", "3") == 2
