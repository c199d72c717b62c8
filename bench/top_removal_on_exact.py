"""Top-k removal on exact tables: the default request against exact Shapley, ContextCite-64
and leave-one-out, and one candidate fix (statistical ties ordered by leave-one-out).

The NQ-10 runs put the default request behind ContextCite-64 on top-2 removal (docs/
results.md, "Where we stand"). Is that the Shapley estimand (exact Shapley's top two
documents matter less when removed from the full context) or the default's sampling (its
top two differ from exact Shapley's)? On a table of ``bench/exact_vs_loo.py`` every
coalition's log p(y) is known, so per question this script reads drop@k (the fall of
log p(y) when the k top-ranked documents leave the full context) for

- ``default``: the service's default request replayed on the table (no model runs) with
  ``--seeds`` seeds, its mean: the default's expectation on that question;
  ``default-unrefined`` the same without the coalitions spent on the ranking's boundaries
  (``worker/shapley/boundary.py``; the default before it, same seeds);
- ``exact``: the exact Shapley values (the estimand, no sampling);
- ``contextcite-64``: ContextCite's surrogate on the package's own 64 ablations (the run's);
- ``loo``: leave-one-out;
- ``ties-by-loo@z``: the default's scores, with neighbours whose gap is within z combined
  stderrs (chained into one group) ordered by their leave-one-out drop. The first layer of
  ``layered`` evaluates every leave-one-out coalition, so the fix would cost nothing; it
  changes the ranking, not the scores (LDS unchanged).

Ties in every ranking are broken by the harness's per-question order
(``faithfulness.tie_order``), the same for every method. Paired differences over
questions with bootstrap 95% intervals, per model and number of documents:

    .venv/bin/python bench/top_removal_on_exact.py \\
        --exact docs/results/exact-vs-loo-8docs/rows.jsonl --seeds 10 --z 0.5 1 2
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.estimator_curve import answer_tokens, cell, cite_fit, key  # noqa: E402
from bench.exact_tables import exact_shapley, leave_one_out  # noqa: E402
from bench.redraw_on_exact import BEFORE_BOUNDARIES, default_level  # noqa: E402
from worker.evaluation.contextcite import package_masks  # noqa: E402
from worker.evaluation.faithfulness import (  # noqa: E402
    mask_key,
    question_seed,
    removal_mask,
    spearman,
    tie_order,
    top_documents,
)
from worker.evaluation.paired import paired_difference  # noqa: E402
from worker.shapley import layered  # noqa: E402

KS = (2, 3)
COLUMNS = (*(f"drop@{k}" for k in KS), "spearman")
PAIRS = (
    ("default", "default-unrefined"),
    ("default-unrefined", "exact"),
    ("default-unrefined", "contextcite-64"),
    ("default", "contextcite-64"),
    ("exact", "contextcite-64"),
    ("default", "exact"),
    ("loo", "contextcite-64"),
)


def ties_by_loo(
    scores: Sequence[float],
    stderr: Sequence[float | None],
    loo: Sequence[float],
    priority: Sequence[int],
    z: float,
) -> list[int]:
    """The ranking by score, with each run of neighbours less than ``z`` combined stderrs
    apart ordered by leave-one-out (a missing stderr counts as 0: no tie)."""
    order = top_documents(scores, priority)
    se = [s or 0.0 for s in stderr]
    groups: list[list[int]] = [[order[0]]]
    for above, below in zip(order, order[1:], strict=False):
        if scores[above] - scores[below] < z * float(np.hypot(se[above], se[below])):
            groups[-1].append(below)
        else:
            groups.append([below])
    place = {d: i for i, d in enumerate(order)}
    return [d for g in groups for d in sorted(g, key=lambda d: (-loo[d], place[d]))]


def drop(values: dict[str, float], order: Sequence[int], k: int) -> float:
    """The fall of log p(y) when the first ``k`` documents of ``order`` leave."""
    n = len(next(iter(values)))
    return values["1" * n] - values[mask_key(removal_mask(n, order, k))]


def one_question(
    row: dict[str, Any], seeds: int, zs: Sequence[float], budget: int, tokens: int
) -> dict[str, dict[str, float]]:
    """drop@k and Spearman with exact Shapley per method on one table (the default's
    and the fixes': means over seeds)."""
    n, values = row["n"], row["values"]
    priority = tie_order(n, question_seed(row["id"]))
    loo = leave_one_out(values, n).tolist()
    exact = exact_shapley(values, n).tolist()
    fixed = {
        "exact": top_documents(exact, priority),
        "contextcite-64": top_documents(
            cite_fit(values, package_masks(n, 64), "logprob", tokens).tolist(), priority
        ),
        "loo": top_documents(loo, priority),
    }
    out = {name: metrics(values, order, exact) for name, order in fixed.items()}
    run = {"budget": budget, "estimator": "auto", "model": row["model"]}
    now = {**run, "extra": {"layered": layered.DESIGN}}
    before = {**run, "extra": {"layered": BEFORE_BOUNDARIES}}
    draws: dict[str, list[list[int]]] = defaultdict(list)
    for seed in range(seeds):
        scores, stderr = default_level(row, now, 1000 + seed)
        draws["default"].append(top_documents(scores, priority))
        for z in zs:
            draws[f"ties-by-loo@{z:g}"].append(ties_by_loo(scores, stderr, loo, priority, z))
        unrefined = default_level(row, before, 1000 + seed)[0]
        draws["default-unrefined"].append(top_documents(unrefined, priority))
    for name, orders in draws.items():
        got = [metrics(values, o, exact) for o in orders]
        out[name] = {m: float(np.mean([g[m] for g in got])) for m in COLUMNS}
    return out


def metrics(
    values: dict[str, float], order: Sequence[int], exact: Sequence[float]
) -> dict[str, float]:
    """drop@k for each k, and the Spearman correlation of the ranking with the exact
    Shapley values (the ranking as scores: first = highest)."""
    place = np.empty(len(order))
    place[list(order)] = -np.arange(len(order), dtype=float)
    got = {f"drop@{k}": drop(values, order, k) for k in KS}
    return {**got, "spearman": spearman(place.tolist(), exact) or 0.0}


def report(
    rows: list[dict[str, Any]], found: list[dict[str, dict[str, float]]], zs: Sequence[float]
) -> list[str]:
    """A paired table per model and number of documents."""
    groups: dict[tuple[str, int], list[dict[str, dict[str, float]]]] = defaultdict(list)
    for row, got in zip(rows, found, strict=True):
        groups[(row["model"], row["n"])].append(got)
        groups[(row["model"], 0)].append(got)  # 0: every table of the model
    pairs = [*PAIRS, *((f"ties-by-loo@{z:g}", "default") for z in zs)]
    lines = []
    for (model, n), got in sorted(groups.items()):
        lines += [
            "",
            f"{model}, {f'{n} documents' if n else 'every table'}, N = {len(got)} questions",
            "",
            "| pair | " + " | ".join(COLUMNS) + " (with exact Shapley) |",
            "|---|" + "---|" * len(COLUMNS),
        ]
        lines += paired_lines(got, pairs, COLUMNS)
    return lines


def paired_lines(
    got: list[dict[str, dict[str, float]]],
    pairs: Sequence[tuple[str, str]],
    columns: Sequence[str],
) -> list[str]:
    """A table row per pair (a, b): a minus b over the questions, per column, with its
    bootstrap interval."""
    lines = []
    for a, b in pairs:
        cells = [
            cell(paired_difference([g[a][m] for g in got], [g[b][m] for g in got])) for m in columns
        ]
        lines.append(f"| {a} minus {b} | " + " | ".join(cells) + " |")
    return lines


def read_tables(paths: Sequence[Path], *fields: str) -> list[dict[str, Any]]:
    """The exact tables of ``bench/exact_vs_loo.py`` rows files that hold ``fields``."""
    return [
        r for path in paths for r in map(json.loads, path.read_text().splitlines())
        if all(f in r for f in fields)
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exact", type=Path, nargs="+", required=True, help="rows.jsonl files")
    parser.add_argument("--seeds", type=int, default=10, help="redraws of the default")
    parser.add_argument("--budget", type=int, default=128, help="the default request's")
    parser.add_argument("--z", type=float, nargs="*", default=[1.0], help="tie widths")
    args = parser.parse_args(argv)
    rows = read_tables(args.exact, "values")
    tokens = answer_tokens(rows)
    found = [one_question(r, args.seeds, args.z, args.budget, tokens[key(r)]) for r in rows]
    print(f"# drop@k on {len(rows)} exact tables; the default at budget {args.budget}, "
          f"{args.seeds} seeds; method minus method, bootstrap 95% intervals")  # fmt: skip
    print("\n".join(report(rows, found, args.z)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
