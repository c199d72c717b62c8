"""``bench/standing.py``: the paired table at the top of docs/results.md, from records."""

from __future__ import annotations

import json
import re
from pathlib import Path

from bench.standing import load, means_table, strata_table, table, write, write_section
from tests.worker.evaluation.eval_fakes import RuleEngine
from tests.worker.evaluation.test_eval_runner import FILLER, _example
from worker.evaluation.config import EvalConfig
from worker.evaluation.runner import evaluate


def _records(count: int, methods: tuple[str, ...] = ("loo", "shapley")) -> list[dict]:
    """Questions whose answer needs document 3 alone: Shapley and leave-one-out both name
    it, so every paired difference but seconds is 0."""
    texts = [*FILLER[:3], "The zebra has black and white stripes.", FILLER[3]]
    config = EvalConfig(model="fake", budget=32, heldout=6, methods=methods)
    engine = RuleEngine([("zebra", "Zebra.")])
    return [evaluate(engine, _example(texts, {3}, qid=f"q{i}"), config) for i in range(count)]


def test_a_row_per_pair_the_records_hold_with_n_and_intervals(tmp_path: Path) -> None:
    records = _records(3)
    out = table([("fake-model", records)]).splitlines()
    assert out[0].startswith("| model | method minus | N |")
    assert len(out) == 3  # only Shapley minus leave-one-out: no ContextCite, no Banzhaf
    cells = [c.strip() for c in out[2].strip("|").split("|")]
    assert cells[:3] == ["fake-model", "Shapley (default) minus leave-one-out", "3"]
    assert cells[3] == "0.00 [0.00, 0.00]"  # gold recall@1: both name document 3
    assert cells[4] == "0.00 [0.00, 0.00]"  # drop@2: the same top two documents


def test_banzhaf_is_paired_with_the_default_too_and_keep_at_1_reads_sufficiency() -> None:
    records = _records(2, ("loo", "shapley", "banzhaf-logprob-32"))
    out = table([("fake-model", records)]).splitlines()
    labels = [[c.strip() for c in line.strip("|").split("|")][1] for line in out[2:]]
    assert labels == [
        "Shapley (default) minus leave-one-out",
        "`banzhaf` at 32 minus leave-one-out",
        "`banzhaf` at 32 minus Shapley (default)",
    ]
    against_default = [c.strip() for c in out[-1].strip("|").split("|")]
    assert against_default[6] == "0.00 [0.00, 0.00]"  # keep@1: document 3 alone gives y
    means = means_table([("fake-model", records)])
    assert "| fake-model | shapley (default) | 2 | 1.00 [1.00, 1.00] | " in means
    keep = [c.strip() for c in means.splitlines()[2].strip("|").split("|")][6]
    assert keep == "1.00 [1.00, 1.00]"


def test_every_figure_of_both_tables_carries_its_interval() -> None:
    records = _records(3)
    for text in (table([("fake-model", records)]), means_table([("fake-model", records)])):
        for line in text.splitlines()[2:]:
            figures = [c.strip() for c in line.strip("|").split("|")][3:]
            assert len(figures) == 6  # recall@1, drop@2, drop@3, keep@1, LDS, seconds
            assert all(re.fullmatch(r"-?[\d.]+ \[-?[\d.]+, -?[\d.]+\]", f) for f in figures)


def test_the_strata_table_repeats_the_pairs_on_each_correct_stratum() -> None:
    records = _records(3)  # "Zebra." is right with the full context and from document 3
    assert all(r["full_correct"] and r["gold_only_correct"] for r in records)
    out = strata_table([("fake-model", records)]).splitlines()
    assert out[0].startswith("| model | stratum | method minus | N |")
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in out[2:]]
    assert [row[1] for row in cells] == [
        "correct with the full context",
        "correct from the gold passage alone",
    ]
    for row in cells:
        assert row[2:4] == ["Shapley (default) minus leave-one-out", "3"]
        assert row[4] == "0.00 [0.00, 0.00]"
        assert all(re.fullmatch(r"-?[\d.]+ \[-?[\d.]+, -?[\d.]+\]", f) for f in row[4:])


def test_write_swaps_the_table_and_the_title_and_keeps_the_prose(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    records = _records(2)
    # a running evaluation's half-written last line is left out
    text = "".join(json.dumps(r) + "\n" for r in records) + '{"id": "q9", "meth'
    (run / "results.jsonl").write_text(text)
    assert len(load(run)) == 2
    page = tmp_path / "results.md"
    page.write_text(
        "# Results\n\n## Where we stand (2026-12-05: N = 1 fake of the 100 per model)\n\n"
        "Prose before.\n\n| model | method minus | N |\n|---|---|---|\n| old | row | 1 |\n\n"
        "Prose after.\n\n| model | stratum | method minus | N |\n|---|---|---|---|\n"
        "| old | stratum row | 1 |\n\nStrata prose.\n\n"
        "### NQ-10 at today's default (partial)\n\nN = 1.\n\n"
        "| model | method | N |\n|---|---|---|\n| old | means | 1 |\n\nMore prose.\n"
    )
    write(page, table([("fake-model", load(run))]), [("fake-model", load(run))])
    new = page.read_text()
    assert "(2026-12-05: N = 2 fake of the 100 per model)" in new
    assert "| old | row | 1 |" not in new
    assert "| fake-model | Shapley (default) minus leave-one-out | 2 |" in new
    assert "Prose before." in new
    assert "Prose after." in new
    assert "| old | stratum row | 1 |" not in new
    assert "| fake-model | correct with the full context | Shapley (default) minus" in new
    assert "Strata prose." in new
    assert "| old | means | 1 |" not in new
    assert "| fake-model | shapley (default) | 2 | 1.00 [1.00, 1.00] |" in new
    assert new.endswith("More prose.\n")


def test_write_section_adds_then_swaps_the_tables_of_another_run(tmp_path: Path) -> None:
    records = _records(2)
    page = tmp_path / "results.md"
    page.write_text(
        "# R\n\n## NQ-20, gemma (N = 1)\n\nProse.\n\n## Next\n\n| model | method | N |\n"
    )
    write_section(page, "## NQ-20", [("fake-model", records)])
    first = page.read_text()
    section, rest = first.split("## Next")
    assert "Prose." in section
    assert "| fake-model | Shapley (default) minus leave-one-out | 2 |" in section
    assert "| fake-model | shapley (default) | 2 |" in section
    assert section.count(strata_table([("fake-model", records)])) == 1
    assert rest == "\n\n| model | method | N |\n"  # the next section's table is not touched
    write_section(page, "## NQ-20", [("fake-model", records)])
    assert page.read_text() == first  # a second write swaps the same tables in place
