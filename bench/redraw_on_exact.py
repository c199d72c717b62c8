"""Was a run's draw of coalitions typical? The default request redrawn on exact tables.

A run of ``textgenshap eval`` explains each question once, with one draw of coalitions
(the record's ``seed``). Where ``bench/exact_vs_loo.py`` has evaluated every coalition of
the same question, the service's own pipeline can run again on that table instead of the
model (a table-backed oracle: the same answers and log p(y) the model gave), so no model
runs. Per question this script

- leaves out a table that scores another target than the record (another answer, or
  another token sequence for it: ``eval_on_exact.same_target``);
- reruns the record's request with the record's seed and checks that it reproduces the
  record's scores (the largest difference is printed: it should be 0, else the table or
  the code differs from the run's);
- reruns it with ``--seeds`` other seeds, and reads drop@k (the fall of log p(y) when
  the k top-scored documents leave) for the record's draw, for the mean over the redraws
  and for the exact Shapley values.

"record minus redraws" is what the record's draw cost against the estimator's expectation
on that question; "redraws minus exact" is the estimator's expected shortfall.

    .venv/bin/python bench/redraw_on_exact.py \\
        --exact docs/results/exact-vs-loo-10docs/rows.jsonl \\
        --eval docs/results/nq10-gemma-layered128/results.jsonl

Only the default request (``shapley``, the record's budget and estimator) is redrawn.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.estimator_curve import cell  # noqa: E402
from bench.eval_on_exact import same_target  # noqa: E402
from bench.exact_tables import exact_shapley  # noqa: E402
from service.contract.schemas import DocumentIn, ExplainRequest  # noqa: E402
from worker.evaluation.faithfulness import mask_key, removal_drop  # noqa: E402
from worker.evaluation.paired import bootstrap_mean, paired_difference  # noqa: E402
from worker.explain import run_explanation  # noqa: E402
from worker.shapley.oracle import OracleStats  # noqa: E402
from worker.shapley.units import Unit  # noqa: E402

KS = (1, 2, 3)


class TableOracle:
    """The model's recorded answers and log p(y) per coalition of whole documents."""

    def __init__(self, table_row: dict[str, Any]) -> None:
        self.row = table_row
        self.stats = OracleStats(attention_backend="table")

    def answers(self, units: Sequence[Unit], masks: npt.NDArray[np.bool_]) -> list[str]:
        return [self.row["answers"][mask_key(m)] for m in masks]

    def log_probs(
        self, units: Sequence[Unit], masks: npt.NDArray[np.bool_], answer: str
    ) -> npt.NDArray[np.float64]:
        return np.array([self.row["values"][mask_key(m)] for m in masks], dtype=np.float64)


def default_scores(table_row: dict[str, Any], run: dict[str, Any], seed: int) -> list[float]:
    """The document-level log p scores of the run's default request (method ``shapley``,
    its budget and estimator) on the table, with ``seed``."""
    n = table_row["n"]
    request = ExplainRequest(
        question="q",  # the table answers; the seed is explicit, so no text matters
        documents=[DocumentIn(title=f"T{i}", text=f"document {i}") for i in range(n)],
        levels=["document"],
        budget=run["budget"],
        estimator=run["estimator"],
        seed=seed,
        checks=False,
    )
    level = run_explanation(request, TableOracle(table_row), model=run["model"]).levels[0]
    return [float(f.logprob) if f.logprob is not None else 0.0 for f in level.features]


def one_question(
    table_row: dict[str, Any], record: dict[str, Any], run: dict[str, Any], seeds: int
) -> dict[str, Any]:
    """drop@k of the record's draw, of ``seeds`` redraws (mean, min) and of exact Shapley."""
    values, priority = table_row["values"], record["tie_priority"]
    own = record["methods"]["shapley"]["scores"]
    again = default_scores(table_row, run, record["seed"])
    draws = [default_scores(table_row, run, 1000 + s) for s in range(seeds)]
    exact = exact_shapley(values, table_row["n"]).tolist()
    out: dict[str, Any] = {"id": record["id"], "reproduced": float(np.max(np.abs(
        np.array(again) - np.array(own))))}  # fmt: skip
    for k in KS:
        redrawn = [removal_drop(d, priority, values, k) for d in draws]
        out[f"drop@{k}"] = {
            "record": removal_drop(own, priority, values, k),
            "redraws": float(np.mean(redrawn)),
            "worst redraw": float(np.min(redrawn)),
            "exact": removal_drop(exact, priority, values, k),
        }
    return out


def table(per_question: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| question | largest difference from the record | "
        + " | ".join(f"drop@{k}: record / redraws (worst) / exact" for k in KS)
        + " |",
        "|---|---|" + "---|" * len(KS),
    ]
    for q in per_question:
        cells = [
            f"{d['record']:.2f} / {d['redraws']:.2f} ({d['worst redraw']:.2f}) / {d['exact']:.2f}"
            for d in (q[f"drop@{k}"] for k in KS)
        ]
        lines.append(f"| {q['id']} | {q['reproduced']:.1e} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "| drop@k | record minus redraws | redraws minus exact | record |",
        "|---|---|---|---|",
    ]
    for k in KS:
        got = [q[f"drop@{k}"] for q in per_question]
        record = [d["record"] for d in got]
        redraws = [d["redraws"] for d in got]
        lines.append(
            f"| drop@{k} | {cell(paired_difference(record, redraws))} | "
            f"{cell(paired_difference(redraws, [d['exact'] for d in got]))} | "
            f"{cell(bootstrap_mean(record))} |"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exact", type=Path, nargs="+", required=True, help="rows.jsonl files")
    parser.add_argument("--eval", type=Path, required=True, help="an eval's results.jsonl")
    parser.add_argument("--seeds", type=int, default=20)
    args = parser.parse_args(argv)
    run = json.loads((args.eval.parent / "run.json").read_text())
    records = {r["id"]: r for r in map(json.loads, args.eval.read_text().splitlines())}
    held = [
        r
        for path in args.exact
        for r in map(json.loads, path.read_text().splitlines())
        if r["model"] == run["model"] and "values" in r and "shapley" in
        records.get(r["id"], {}).get("methods", {})
    ]  # fmt: skip
    tables = [r for r in held if same_target(r, records[r["id"]])]
    if len(tables) < len(held):
        print(f"# {len(held) - len(tables)} tables left out: they score another target "
              "than the record (eval_on_exact.same_target)")  # fmt: skip
    per_question = [one_question(t, records[t["id"]], run, args.seeds) for t in tables]
    print(f"# {args.eval} ({run['model']}, shapley) redrawn on {len(tables)} exact tables, "
          f"{args.seeds} seeds")  # fmt: skip
    print("\n".join(table(per_question)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
