"""The estimator curve's measured seconds (bench/measured_cost.py) and its top-1 regret."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))

from bench.estimator_curve import agreement  # noqa: E402
from bench.measured_cost import CostModel, ratios  # noqa: E402


def _row(qid: str, method: str, seconds: float, coalitions: int) -> dict[str, object]:
    return {"model": "m", "id": qid, "method": method, "seconds": seconds, "coalitions": coalitions}


@pytest.fixture
def measured(tmp_path: Path) -> Path:
    rows = []
    for qid, loo in (("a", 10.0), ("b", 20.0)):
        rows += [
            _row(qid, "loo", loo, 9),
            _row(qid, "layered-logprob@18", 1.1 * loo, 18),
            _row(qid, "layered-logprob@64", 3.0 * loo, 64),
            _row(qid, "contextcite-16", 2.5 * loo, 16),
            _row(qid, "contextcite-32", 5.0 * loo, 32),
        ]
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_ratios_are_per_question_against_leave_one_out(measured: Path) -> None:
    rows = [json.loads(x) for x in measured.read_text().splitlines()]
    got = ratios(rows)
    assert got["m", "loo"] == pytest.approx(1.0)
    assert got["m", "layered-logprob@18"] == pytest.approx(1.1)
    assert got["m", "contextcite-32"] == pytest.approx(5.0)


def test_cost_model_reads_lines_at_the_coalitions_used(measured: Path) -> None:
    costs = CostModel.load([measured])
    assert costs.cost("m", "loo", 9) == pytest.approx(1.0)
    assert costs.cost("m", "ours-layered@18", 18) == pytest.approx(1.1)
    assert costs.cost("m", "ours-auto@64", 64) == pytest.approx(3.0)
    assert costs.cost("m", "ours-layered@41", 41) == pytest.approx(1.1 + 23 * 1.9 / 46)
    assert costs.cost("m", "contextcite-24", 24) == pytest.approx(3.75)
    assert costs.measured["m", "contextcite"] == [16, 32]


def test_unmeasured_methods_and_models_have_no_cost(measured: Path) -> None:
    costs = CostModel.load([measured])
    assert costs.cost("m", "ours-owen@32", 32) is None
    assert costs.cost("other", "loo", 9) is None


def test_top1_regret_is_the_exact_value_lost_over_the_range() -> None:
    exact = np.array([3.0, 2.0, 1.0, 0.0])
    assert agreement(np.array([0.0, 5.0, 1.0, 2.0]), exact, exact)["regret"] == pytest.approx(1 / 3)
    assert agreement(np.array([4.0, 4.0, 1.0, 0.0]), exact, exact)["regret"] == pytest.approx(1 / 6)
    right = agreement(np.array([9.0, 1.0, 0.5, 0.0]), exact, exact)
    assert right["regret"] == 0.0
    assert right["top1"] == 1.0


def test_the_curve_s_contextcite_is_the_package_s_estimator() -> None:
    """On a game that only document 2 moves, the package's solver gives it the whole effect
    (less its Lasso shrinkage) and the others nothing; on the log p game the output is
    the logit of p(y), so a coalition's p 0.9 against 0.1 is worth log 81, not log 9."""
    from bench.estimator_curve import contextcite

    n = 5
    keys = [format(i, "05b") for i in range(2**n)]
    answer = {k: float(k[2] == "1") for k in keys}
    logp = {k: float(np.log(0.9 if k[2] == "1" else 0.1)) for k in keys}
    for game, table, effect in (("answer", answer, 1.0), ("logprob", logp, np.log(81))):
        weights, distinct = contextcite(table, n, 64, game, 3)(np.random.default_rng(0))
        assert weights[2] == pytest.approx(effect, rel=0.05)
        assert weights[2] < effect
        assert np.abs(np.delete(weights, 2)).max() < 0.05
        assert distinct <= 32


def test_the_package_design_is_the_packages_own_ablations_once_per_question() -> None:
    """``contextcite-package-64`` fits the package's own 64 masks (as the NQ runs did),
    whatever the bench's seed, and the curve scores it once per question."""
    from bench.estimator_curve import contextcite_package, rows_for
    from worker.evaluation.contextcite import fit_scores, package_masks
    from worker.evaluation.faithfulness import mask_key

    n = 6
    weights = np.array([3.0, 0.2, 1.5, 0.1, 0.8, 2.2])
    keys = [format(i, f"0{n}b") for i in range(2**n)]
    values = {k: float(weights @ np.array([c == "1" for c in k]) - 20.0) for k in keys}
    masks = package_masks(n, 64)
    expected = fit_scores(masks, np.array([values[mask_key(m)] for m in masks]), 4)
    run = contextcite_package(values, n, "logprob", 4)
    for seed in (0, 1):
        scores, distinct = run(np.random.default_rng(seed))
        assert scores.tolist() == pytest.approx(expected)
        assert distinct == len({mask_key(m) for m in masks})
    record = {"model": "toy", "id": "q1", "n": n, "values": values, "table_seconds": 1.0}
    rows = rows_for(record, "logprob", [32], repeats=5, fast=None, tokens=4)
    assert [r["rep"] for r in rows if r["method"] == "contextcite-package-64"] == [0]
    assert len([r for r in rows if r["method"] == "contextcite-64"]) == 5


def test_the_curve_scores_banzhaf_against_its_own_exact_values() -> None:
    """A saturating 7-document log p table: exact Banzhaf ranks itself perfectly, and the
    service's Banzhaf (regression) is closer to it than the MSR sampler it replaced."""
    from bench.estimator_curve import rows_for

    n = 7
    weights = np.array([3.0, 0.2, 1.5, 0.1, 0.8, 0.05, 2.2])
    keys = [format(i, f"0{n}b") for i in range(2**n)]
    values = {k: float(np.log(weights @ np.array([c == "1" for c in k]) + 0.1)) for k in keys}
    record = {"model": "toy", "id": "q1", "n": n, "values": values, "table_seconds": 1.0}
    rows = rows_for(record, "logprob", [48], repeats=10, fast=None)
    by = {}
    for row in rows:
        by.setdefault(row["method"], []).append(row["banzhaf"])
    assert by["exact-banzhaf"] == [pytest.approx(1.0)]
    assert np.mean(by["ours-banzhaf@48"]) > np.mean(by["ours-banzhaf-msr@48"])
    assert np.mean(by["ours-banzhaf@48"]) > 0.9


def test_paired_table_subtracts_per_question_means() -> None:
    from bench.estimator_curve import paired_table

    def row(qid: str, method: str, lds: float, rep: int = 0) -> dict:
        fields = {"spearman": 0.5, "banzhaf": 0.5, "drop@1": 1.0, "drop@2": 2.0, "drop@3": 3.0}
        return {"model": "m", "game": "logprob", "id": qid, "method": method, "rep": rep,
                "lds": lds, **fields}  # fmt: skip

    rows = [row("a", "cc", 0.5), row("b", "cc", 0.7), row("a", "x", 0.6, 0), row("a", "x", 0.8, 1)]
    rows.append(row("b", "x", 0.7))
    [head, rule, line] = paired_table(rows, "cc")
    assert "lds minus cc" in head
    assert line.startswith("| m | logprob | x | 0.10 [0.00, 0.20] | 0.00")
    assert line.endswith("| 2 |")
