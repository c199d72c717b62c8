"""Shapley or Banzhaf for the passage ranking? Both estimands and both service requests on
exact tables, where every removal and every coalition's log p(y) is known.

On the NQ-10 runs (N = 73 / 78 paired questions) the service's ``method: banzhaf`` at 32
coalitions is ahead of the default request (Shapley, 128 coalitions) on LDS and gold
recall@1, level or ahead on top-k removal, at a quarter of its seconds. Is that the
estimand (the Banzhaf value weighs every coalition alike, the Shapley value every
coalition *size* alike) or the budget (the default's sampling)? On a table of
``bench/exact_vs_loo.py`` both estimands are known exactly, and each request can be
replayed with many seeds, so per question this script reads, for

- ``exact-shapley`` and ``exact-banzhaf``: the estimands themselves (no sampling);
- ``default``: the default request (``method: shapley``, budget 128, today's design),
  ranked by its log p(y) scores as the service ranks passages;
- ``shapley@32`` / ``banzhaf@32`` / ``banzhaf@64``: the service's log p game requests
  (``value: logprob``) at those budgets (``banzhaf@32`` is the runs' ``banzhaf-logprob-32``);
- ``default-one-layer``: the default with ``layered`` enumerating its first layer only and
  sampling the rest (does the default spend its budget well at 10 documents?);
- ``contextcite-64`` (the package's own 64 ablations, its estimator) and ``loo``;

these checks: drop@k (the fall of log p(y) when the top k documents leave), flip@k (the
greedy answer of that coalition is no longer y, QA-normalised), keep@k (the greedy answer
from the top k documents alone is y: sufficiency, where removal reads necessity), the
population LDS (the Spearman correlation of the additive prediction with log p(y) over
*all* 2^n coalitions: uniform draws' LDS without the draw), and the Spearman correlation
with each exact estimand. Sampled requests are means over ``--seeds`` replays (their
expectation on the question). Ties are broken by the harness's order
(``faithfulness.tie_order``). Paired differences over questions with bootstrap 95%
intervals, per model and per number of documents (``--out``: each question's checks):

    .venv/bin/python bench/estimand_on_exact.py \\
        --exact docs/results/exact-vs-loo-8docs/rows.jsonl \\
        docs/results/exact-vs-loo-10docs/rows.jsonl \\
        docs/results/exact-vs-loo-10docs-unselected/rows.jsonl --seeds 10
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.estimator_curve import answer_tokens, cell, cite_fit, key  # noqa: E402
from bench.exact_tables import exact_banzhaf, exact_shapley, leave_one_out  # noqa: E402
from bench.redraw_on_exact import replay_request  # noqa: E402
from bench.top_removal_on_exact import paired_lines, read_tables  # noqa: E402
from worker.evaluation.contextcite import package_masks  # noqa: E402
from worker.evaluation.faithfulness import (  # noqa: E402
    keep_mask,
    lds,
    mask_key,
    question_seed,
    removal_mask,
    spearman,
    tie_order,
    top_documents,
)
from worker.evaluation.paired import bootstrap_mean  # noqa: E402
from worker.shapley import layered  # noqa: E402
from worker.shapley.game import normalize_answer  # noqa: E402

KS = (1, 2, 3)
COLUMNS = (
    *(f"drop@{k}" for k in KS),
    *(f"flip@{k}" for k in KS),
    *(f"keep@{k}" for k in KS),
    "lds",
    "vs-shapley",
    "vs-banzhaf",
)
REQUESTS = {  # name: (method, value, budget); the default's value is the request default
    "default": ("shapley", None, 128),
    "default-one-layer": ("shapley", None, 128),
    "shapley@32": ("shapley", "logprob", 32),
    "banzhaf@32": ("banzhaf", "logprob", 32),
    "banzhaf@64": ("banzhaf", "logprob", 64),
}
ONE_LAYER = "default-one-layer"
"""The default with ``layered`` enumerating the first layer only, the rest of the budget
sampled in the middle (at 10 documents: 53 pairs instead of two layers and 8 pairs)."""
PAIRS = (
    ("banzhaf@32", "default"),
    ("banzhaf@64", "default"),
    ("banzhaf@32", "shapley@32"),
    ("exact-banzhaf", "exact-shapley"),
    ("default", "exact-shapley"),
    ("banzhaf@32", "exact-banzhaf"),
    ("banzhaf@64", "banzhaf@32"),
    ("banzhaf@32", "contextcite-64"),
    ("banzhaf@32", "loo"),
    (ONE_LAYER, "default"),
)


@contextmanager
def layers_at_most(count: int | None) -> Iterator[None]:
    """``layered`` enumerating at most ``count`` whole layers (None: as many as fit)."""
    if count is None:
        yield
        return
    fits = layered.full_layers
    layered.full_layers = lambda n, budget: min(fits(n, budget), count)
    try:
        yield
    finally:
        layered.full_layers = fits


def requested_scores(row: dict[str, Any], name: str, seed: int) -> list[float]:
    """The document-level log p(y) scores of one service request replayed on the table."""
    method, value, budget = REQUESTS[name]
    fields: dict[str, Any] = {"value": value} if value else {}
    with layers_at_most(1 if name == ONE_LAYER else None):
        return replay_request(row, seed, row["model"], method=method, budget=budget, **fields)[0]


def checks(
    row: dict[str, Any], scores: Sequence[float], priority: Sequence[int], exact: dict
) -> dict[str, float]:
    """Every column of :data:`COLUMNS` for one ranking's scores on one table."""
    n, values, answers = row["n"], row["values"], row["answers"]
    order = top_documents(scores, priority)
    full, y = values["1" * n], normalize_answer(row["answer"])
    out: dict[str, float] = {}
    for k in KS:
        removed = mask_key(removal_mask(n, order, k))
        out[f"drop@{k}"] = full - values[removed]
        out[f"flip@{k}"] = float(normalize_answer(answers[removed]) != y)
        kept = mask_key(keep_mask(n, order, k))
        out[f"keep@{k}"] = float(normalize_answer(answers[kept]) == y)
    masks = np.array([[c == "1" for c in m] for m in values], dtype=bool)
    out["lds"] = lds(scores, masks, list(values.values())) or 0.0
    out["vs-shapley"] = spearman(scores, exact["shapley"]) or 0.0
    out["vs-banzhaf"] = spearman(scores, exact["banzhaf"]) or 0.0
    return out


def one_question(row: dict[str, Any], seeds: int, tokens: int) -> dict[str, dict[str, float]]:
    """The checks of every method on one table (sampled requests: means over seeds)."""
    n, values = row["n"], row["values"]
    priority = tie_order(n, question_seed(row["id"]))
    exact = {"shapley": exact_shapley(values, n).tolist(), "banzhaf": exact_banzhaf(values, n)}
    exact["banzhaf"] = exact["banzhaf"].tolist()
    fixed = {
        "exact-shapley": exact["shapley"],
        "exact-banzhaf": exact["banzhaf"],
        "contextcite-64": cite_fit(values, package_masks(n, 64), "logprob", tokens).tolist(),
        "loo": leave_one_out(values, n).tolist(),
    }
    out = {name: checks(row, scores, priority, exact) for name, scores in fixed.items()}
    for name in REQUESTS:
        got = [
            checks(row, requested_scores(row, name, 1000 + s), priority, exact)
            for s in range(seeds)
        ]
        out[name] = {c: float(np.mean([g[c] for g in got])) for c in COLUMNS}
    return out


def report(rows: list[dict[str, Any]], found: list[dict[str, dict[str, float]]]) -> list[str]:
    """Each method's means, then the paired differences, per model (every table) and per
    model and number of documents."""
    groups: dict[str, list[dict[str, dict[str, float]]]] = defaultdict(list)
    for row, got in zip(rows, found, strict=True):
        groups[row["model"]].append(got)
        groups[f"{row['model']}, {row['n']} documents"].append(got)
    head = "| " + " | ".join(COLUMNS) + " |"
    rule = "|---|" + "---|" * len(COLUMNS)
    lines = []
    for model, got in sorted(groups.items()):
        lines += ["", f"{model}, N = {len(got)} tables: means", "", f"| method {head}", rule]
        for name in got[0]:
            means = [cell(bootstrap_mean([g[name][c] for g in got])) for c in COLUMNS]
            lines.append(f"| {name} | " + " | ".join(means) + " |")
        lines += ["", f"{model}, N = {len(got)} tables: paired differences", "",
                  f"| pair {head}", rule]  # fmt: skip
        lines += paired_lines(got, PAIRS, COLUMNS)
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exact", type=Path, nargs="+", required=True, help="rows.jsonl files")
    parser.add_argument("--seeds", type=int, default=10, help="replays of each request")
    parser.add_argument("--out", type=Path, help="also write each question's checks (JSONL)")
    args = parser.parse_args(argv)
    rows = read_tables(args.exact, "values", "answers")
    tokens = answer_tokens(rows)
    found = [one_question(r, args.seeds, tokens[key(r)]) for r in rows]
    if args.out:
        lines = [{"model": r["model"], "n": r["n"], "id": r["id"], "checks": got}
                 for r, got in zip(rows, found, strict=True)]  # fmt: skip
        args.out.write_text("".join(json.dumps(line) + "\n" for line in lines))
    print(f"# Shapley and Banzhaf rankings on {len(rows)} exact tables, {args.seeds} seeds "
          "per request; bootstrap 95% intervals")  # fmt: skip
    print("\n".join(report(rows, found)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
