"""Do ``auto``'s standard errors cover the exact values on real-model games? (offline)

Issue 17's acceptance asks, on 5-document questions (exact = all 32 coalitions), for the
sampled scores to lie within 2 reported stderr of the exact values for >= 90% of features,
in both games, on both models. ``bench/coverage_real.py`` measures it through the service
with the model; this script replays the recorded tables of ``bench/exact_vs_loo.py``
instead (every coalition of NQ questions cut to 6 documents, evaluated on the real models):
the coalitions without the 6th document are the 5-document game of the first five (the same
prompts), so no model runs. As the service's default request does, one joint game carries
the answer game (greedy answers, QA-normalised) and log p(y) on the same coalitions (y: the
recorded target, the 6-document full-context answer); checked are y's answer column (y here
is the 5-document full-context answer) and the log p column. Adaptive stopping off.

Prints per model, budget and game: the estimator ``auto`` ran, features checked, the share
covered where a stderr is reported (bootstrap 95% over questions), the share reported null,
and the median of |error| / stderr (0.67 for a normal error with the stderr exactly right:
below it the stderr is wider than the error it describes).

    .venv/bin/python bench/coverage_tables.py --records docs/results/exact-vs-loo/rows.jsonl \\
        --budgets 16,20,24 --seeds 10
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from worker.evaluation.faithfulness import mask_key  # noqa: E402
from worker.evaluation.paired import bootstrap_mean  # noqa: E402
from worker.shapley.estimators import estimate  # noqa: E402
from worker.shapley.game import LOGPROB_KEY, CategoricalGame, normalize_answer  # noqa: E402

DOCUMENTS = 5


def game_of(record: dict[str, Any], documents: int = DOCUMENTS) -> CategoricalGame:
    """The joint game of the first ``documents`` documents (the others always absent)."""

    def key(mask: np.ndarray) -> str:
        return mask_key(np.append(mask, [False] * (record["n"] - documents)))

    return CategoricalGame(
        documents,
        lambda masks: [record["answers"][key(m)] for m in masks],
        log_prob=lambda masks: [record["values"][key(m)] for m in masks],
    )


def columns(est: Any, y: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    out = {"logprob": est.answers.index(LOGPROB_KEY)}
    if y in est.answers:
        out["answer"] = est.answers.index(y)
    return {game: (est.mean[:, j], est.stderr[:, j]) for game, j in out.items()}


def one_record(
    record: dict[str, Any], budgets: list[int], seeds: int, documents: int = DOCUMENTS
) -> list[dict]:
    full = np.arange(record["n"]) < documents
    y = normalize_answer(record["answers"][mask_key(full)])
    exact = columns(estimate(game_of(record, documents), estimator="exact", budget=2**documents), y)
    rows = []
    for budget, seed in itertools.product(budgets, range(seeds)):
        # the ranking column, as the default request passes it (rank_by logprob)
        est = estimate(game_of(record, documents), budget=budget, seed=seed, focus=LOGPROB_KEY)
        for game, (mean, stderr) in columns(est, y).items():
            if game not in exact:
                continue
            for score, se, truth in zip(mean, stderr, exact[game][0], strict=True):
                rows.append(
                    {"model": record["model"], "id": record["id"], "budget": budget,
                     "game": game, "estimator": est.method, "error": float(score - truth),
                     "stderr": None if np.isnan(se) else float(se)}
                )  # fmt: skip
    return rows


def table(rows: list[dict]) -> list[str]:
    out = [
        "| model | budget | game | estimator | features | covered where reported | null "
        "| median abs(error) / stderr |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for model, budget, game in sorted({(r["model"], r["budget"], r["game"]) for r in rows}):
        got = [r for r in rows if (r["model"], r["budget"], r["game"]) == (model, budget, game)]
        per_question: dict[str, list[float]] = {}
        for r in got:
            if r["stderr"] is not None:
                hit = abs(r["error"]) <= 2 * r["stderr"] + 1e-9
                per_question.setdefault(r["id"], []).append(float(hit))
        covered = bootstrap_mean([float(np.mean(v)) for v in per_question.values()])
        nulls = np.mean([r["stderr"] is None for r in got])
        ratios = [abs(r["error"]) / r["stderr"] for r in got if r["stderr"]]
        ratio = f"{np.median(ratios):.2f}" if ratios else "-"
        estimators = "/".join(sorted({r["estimator"] for r in got}))
        cell = "-" if covered.mean is None else f"{covered.mean:.3f}"
        if covered.low is not None:
            cell += f" [{covered.low:.3f}, {covered.high:.3f}]"
        out.append(
            f"| {model} | {budget} | {game} | {estimators} | {len(got)} "
            f"| {cell} (N = {covered.n}) | {nulls:.3f} | {ratio} |"
        )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--records", type=Path, default=Path("docs/results/exact-vs-loo/rows.jsonl")
    )
    parser.add_argument("--budgets", default="16,20,24")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument(
        "--documents", type=int, default=DOCUMENTS,
        help="cut each table to its first N documents (N = the table's own: the whole game)",
    )  # fmt: skip
    args = parser.parse_args()
    records = [json.loads(x) for x in args.records.read_text().splitlines() if x]
    records = [r for r in records if "values" in r and r["n"] >= args.documents]
    budgets = [int(b) for b in args.budgets.split(",")]
    rows = [
        row for record in records for row in one_record(record, budgets, args.seeds, args.documents)
    ]
    print(f"# {len(records)} recorded tables cut to {args.documents} documents, {args.seeds} seeds")
    print("\n".join(table(rows)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
