"""The evaluation's explanations scored on exact tables: is a method's LDS gap its estimand
or its sampling?

``textgenshap eval`` scores every method's document scores by LDS on 32 held-out random
coalitions of the real model. Where ``bench/exact_vs_loo.py`` has evaluated *every*
coalition of the same question (same model, same documents, same prompt), the same scores
can be scored on all 2^n - 2 coalitions instead, next to the exact Shapley and Banzhaf
values of that table. Per question and method this gives:

- ``lds_all``: LDS over every coalition but the full and empty one (the population the
  held-out coalitions are drawn from, without their sampling noise);
- ``lds_heldout``: LDS over the record's own 32 held-out coalitions, values from the table;
- the same for ``exact-shapley`` and ``exact-banzhaf`` of the table;
- ``drop@k``: the fall of log p(y) when the k top-scored documents leave, read from the
  table (ties by the record's own tie order), the removal check without the harness's
  batch: where a method's drop trails leave-one-out's, the exact values' drop says whether
  its estimand does too.

So "Shapley's sampled scores against exact Shapley" is the sampling's share of a gap and
"exact Shapley against ContextCite" the estimand's. Records whose full-context answer
differs from the table's (after QA normalisation), or whose own coalitions' log p(y)
differs from the table's (a table made before 1eb5ace scored the encoding of y's text, not
the model's own ids), are left out and counted.

    .venv/bin/python bench/eval_on_exact.py \\
        --exact docs/results/exact-vs-loo-10docs/rows.jsonl \\
        --eval docs/results/nq10-smollm2-layered128/results.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.estimator_curve import cell  # noqa: E402
from bench.exact_tables import exact_banzhaf, exact_shapley  # noqa: E402
from worker.evaluation.faithfulness import from_key, lds, removal_drop  # noqa: E402
from worker.evaluation.paired import bootstrap_mean, paired_difference  # noqa: E402
from worker.shapley.game import normalize_answer  # noqa: E402

EXACT = ("exact-shapley", "exact-banzhaf")
DROPS = ("drop@1", "drop@2", "drop@3")


def scored(table_row: dict[str, Any], record: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Every method's LDS on the table: over all coalitions and over the held-out ones."""
    n, values = table_row["n"], table_row["values"]
    keys = [k for k in values if "1" in k and "0" in k]
    every = np.stack([from_key(k) for k in keys])
    truth = [values[k] for k in keys]
    heldout = [k for k in record["heldout"] if k in values]
    held = np.stack([from_key(k) for k in heldout])
    held_truth = [values[k] for k in heldout]
    scores = {name: list(run["scores"]) for name, run in record["methods"].items()}
    scores["exact-shapley"] = exact_shapley(values, n).tolist()
    scores["exact-banzhaf"] = exact_banzhaf(values, n).tolist()
    priority = record.get("tie_priority", list(range(n)))
    return {
        name: {"lds_all": lds(s, every, truth), "lds_heldout": lds(s, held, held_truth)}
        | {f"drop@{k}": removal_drop(s, priority, values, k) for k in (1, 2, 3) if k < n}
        for name, s in scores.items()
        if name != "given"
    }


TOLERANCE = 1e-3
"""Nats by which the record's own coalitions may differ from the table's (batching)."""


def same_target(table_row: dict[str, Any], record: dict[str, Any]) -> bool:
    """Whether the table scores the answer the record explains: the same text after QA
    normalisation and, on the coalitions the record evaluated itself, the same log p(y).
    The text alone is not enough: a table made before 1eb5ace scored the encoding of y's
    text, which for SmolLM2's " 2022" is another token sequence than the model's own."""
    if normalize_answer(table_row["answer"]) != normalize_answer(record["full_answer"]):
        return False
    values = table_row["values"]
    return all(
        abs(values[key] - seen["logp"]) <= TOLERANCE
        for key, seen in record.get("coalitions", {}).items()
        if key in values and seen.get("logp") is not None
    )


def rows(exact: list[dict[str, Any]], records: dict[str, dict[str, Any]]) -> list[dict]:
    """One row per question both files hold with the same target (:func:`same_target`)."""
    out = []
    for table_row in exact:
        record = records.get(table_row["id"])
        if record is None or "values" not in table_row:
            continue
        same = same_target(table_row, record)
        out.append(
            {"id": table_row["id"], "same_answer": same, "methods": scored(table_row, record)}
            if same
            else {"id": table_row["id"], "same_answer": False}
        )
    return out


def table(per_question: list[dict], against: str) -> list[str]:
    usable = [r for r in per_question if r["same_answer"]]
    names = sorted({m for r in usable for m in r["methods"]})
    lines = [
        f"N = {len(usable)} questions ({len(per_question) - len(usable)} left out: "
        "another full-context answer, or the table scored another token sequence for it)",
        "",
        f"| method | LDS, all coalitions | LDS, 32 held out | minus {against} (all) |",
        "|---|---|---|---|",
    ]
    for name in names:
        rows_ = [r["methods"].get(name) for r in usable]
        every = [x["lds_all"] if x else None for x in rows_]
        held = [x["lds_heldout"] if x else None for x in rows_]
        base = [r["methods"].get(against, {}).get("lds_all") for r in usable]
        lines.append(
            f"| {name} | {cell(bootstrap_mean([v for v in every if v is not None]))} | "
            f"{cell(bootstrap_mean([v for v in held if v is not None]))} | "
            f"{cell(paired_difference(every, base))} |"
        )
    return lines


def drop_table(per_question: list[dict], against: str = "loo") -> list[str]:
    """Removal drops read from the tables, and each method's paired difference with
    ``against`` on the same questions."""
    usable = [r for r in per_question if r["same_answer"]]
    names = sorted({m for r in usable for m in r["methods"]})
    heads = " | ".join(DROPS) + " | " + " | ".join(f"{d} minus {against}" for d in DROPS)
    lines = [f"| method | {heads} |", "|---|" + "---|" * (2 * len(DROPS))]
    for name in names:
        own = {d: [r["methods"].get(name, {}).get(d) for r in usable] for d in DROPS}
        base = {d: [r["methods"].get(against, {}).get(d) for r in usable] for d in DROPS}
        means = [cell(bootstrap_mean([v for v in own[d] if v is not None])) for d in DROPS]
        diffs = [cell(paired_difference(own[d], base[d])) for d in DROPS]
        lines.append(f"| {name} | " + " | ".join(means + diffs) + " |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exact", type=Path, required=True, help="exact_vs_loo rows.jsonl")
    parser.add_argument("--eval", type=Path, required=True, help="an eval's results.jsonl")
    parser.add_argument("--against", default="contextcite-engine-64")
    args = parser.parse_args(argv)
    model = json.loads((args.eval.parent / "run.json").read_text())["model"]
    exact = [r for r in map(json.loads, args.exact.read_text().splitlines()) if r["model"] == model]
    records = {r["id"]: r for r in map(json.loads, args.eval.read_text().splitlines())}
    print(f"# {args.eval} on the exact tables of {args.exact} ({model})")
    per_question = rows(exact, records)
    print("\n".join(table(per_question, args.against)))
    print("\nRemoval drops of log p(y), read from the tables:\n")
    print("\n".join(drop_table(per_question)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
