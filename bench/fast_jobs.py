"""Fast-mode jobs against exact jobs, as a user runs them: the same request with
``fast: true`` and without, on NaturalQuestions questions.

Fast mode's per-coalition agreement is in docs/performance.md; what a user of a fast job
gets is a passage ranking and its checks. Per question this script runs the service's
pipeline (``run_explanation``, the worker's session and exact-checks wiring) once in fast
mode and, with ``--exact``, once exactly, and prints

- the fast job's seconds and ``stats.fast_agreement`` (its checks run on the exact engine;
  the share of those coalitions where fast mode gave the exact answer, and the mean gap of
  log p(y) in nats);
- with ``--exact``: the exact job's seconds, whether both jobs explain the same answer,
  rank the same passage first, and the Spearman correlation of their log p(y) scores.

Means with bootstrap 95% intervals over the questions:

    .venv/bin/python bench/fast_jobs.py --model gemma-3-270m --questions 6 --exact
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from service.contract.results import ExplainResult  # noqa: E402
from service.contract.schemas import DocumentIn, ExplainRequest  # noqa: E402
from worker.evaluation.data import Example, load_examples  # noqa: E402
from worker.evaluation.faithfulness import spearman  # noqa: E402
from worker.evaluation.paired import bootstrap_mean  # noqa: E402
from worker.evaluation.paths import nq_file  # noqa: E402
from worker.explain import run_explanation  # noqa: E402
from worker.resident_engines import exact_session, open_session  # noqa: E402

COLUMNS = ("fast s", "agree", "log p gap", "exact s", "same y", "same top-1", "Spearman")


def request_for(example: Example, budget: int, fast: bool) -> ExplainRequest:
    """The document-level request a user would send for this question."""
    return ExplainRequest(
        question=example.question,
        documents=[DocumentIn(title=d.title, text=d.text) for d in example.documents],
        levels=["document"],
        budget=budget,
        fast=fast,
    )


def run_job(engine: Any, request: ExplainRequest, model: str) -> tuple[ExplainResult, float]:
    """One job through the worker's wiring (a fast job's checks on an exact session)."""
    start = time.perf_counter()
    result = run_explanation(
        request,
        open_session(engine, request, 0),
        model=model,
        exact_session=exact_session(engine, request),
    )
    return result, time.perf_counter() - start


def logprob_scores(result: ExplainResult) -> list[float]:
    return [float(f.logprob or 0.0) for f in result.levels[0].features]


def question_row(
    engine: Any, example: Example, model: str, budget: int, exact: bool
) -> dict[str, float]:
    """The columns of one question (the exact job's only with ``exact``)."""
    fast, fast_seconds = run_job(engine, request_for(example, budget, True), model)
    agreed = fast.stats.fast_agreement
    row = {"fast s": fast_seconds}
    if agreed is not None:
        row["agree"] = agreed.answers_agree
        if agreed.logprob_mean_abs_diff is not None:
            row["log p gap"] = agreed.logprob_mean_abs_diff
    if exact:
        truth, exact_seconds = run_job(engine, request_for(example, budget, False), model)
        row["exact s"] = exact_seconds
        row["same y"] = float(fast.answer == truth.answer)
        row["same top-1"] = float(fast.passage_ranking[0] == truth.passage_ranking[0])
        rho = spearman(logprob_scores(fast), logprob_scores(truth))
        if rho is not None:
            row["Spearman"] = rho
    return row


def summary(rows: list[dict[str, float]]) -> str:
    """Mean [95% interval] (N) of every column over the questions that have it."""
    lines = ["| column | mean [95%] | N |", "|---|---|---|"]
    for column in COLUMNS:
        got = bootstrap_mean([r[column] for r in rows if column in r])
        if got.n == 0:
            continue
        low = "" if got.low is None else f" [{got.low:.2f}, {got.high:.2f}]"
        lines.append(f"| {column} | {got.mean:.2f}{low} | {got.n} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--questions", type=int, default=6)
    parser.add_argument("--docs", type=int, default=10, choices=(10, 20))
    parser.add_argument("--budget", type=int, default=128)
    parser.add_argument("--exact", action="store_true", help="also run each exact job")
    args = parser.parse_args(argv)
    from worker.engine.loading.registry import load_engine

    engine = load_engine(args.model)
    rows = []
    print("| question | " + " | ".join(COLUMNS) + " |")
    print("|---|" + "---|" * len(COLUMNS))
    for example in load_examples(nq_file(args.docs), limit=args.questions):
        row = question_row(engine, example, args.model, args.budget, args.exact)
        cells = [f"{row[c]:.2f}" if c in row else "" for c in COLUMNS]
        print(f"| {example.id} | " + " | ".join(cells) + " |", flush=True)
        rows.append(row)
    print()
    print(summary(rows))


if __name__ == "__main__":
    main()
