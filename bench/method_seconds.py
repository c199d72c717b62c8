"""What each explanation method costs in wall seconds, measured, against leave-one-out.

`bench/estimator_curve.py` places methods on its seconds axis as *coalitions x the mean
seconds per coalition* of a recorded table. That proxy treats every coalition alike, but
a coalition's cost grows with its prompt: a lone document is a short prompt, and the
engine's prefix tree shares the leading documents among coalitions. So a method's
coalitions are not its seconds. This script measures them: for each question of a
recorded table (`bench/exact_vs_loo.py`'s rows: same questions, same cut, same
full-context answer ``y``) it runs every method once on a fresh engine session (its cost
its own, no memo shared), in an order rotated per question so that no method always runs
first on a warm or a contended machine:

- ``loo``: decode ``y``, then leave-one-out on log p(y) (n + 1 teacher-forced coalitions);
  the pipeline's methods decode ``y`` too, as every request starts without it;
- ``layered-logprob@B``: the service's pipeline on the log p(y) game alone, ``layered``
  estimator at budget B, no adaptive stopping (as the curve replays it);
- ``joint@B``: the service's default game (the answer game with log p(y) on the same
  coalitions: every coalition also decodes its greedy answer), ``layered`` at budget B;
- ``contextcite-K``: the released ContextCite package at K ablations (its own loop, handed
  ``y``), plus the seconds leave-one-out's session took to decode ``y``;
- ``attention``: one forward pass.

Reported per model: coalitions, forward passes, tokens computed (deterministic: the cost
without the machine's noise) and seconds, each as a ratio to leave-one-out's on the same
question (geometric mean over questions, bootstrap 95% interval).

    .venv/bin/python bench/method_seconds.py --records docs/results/exact-vs-loo-8docs/rows.jsonl \\
        --models gemma-3-270m --questions 12 --out docs/results/method-seconds
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.estimator_curve import agreement  # noqa: E402
from bench.exact_tables import exact_shapley, table_of  # noqa: E402
from bench.measured_cost import log_ratios  # noqa: E402
from bench.rows import append_rows, read_rows  # noqa: E402
from service.contract.schemas import ExplainRequest  # noqa: E402
from worker.engine.loading.registry import load_engine  # noqa: E402
from worker.evaluation import attention, contextcite, rankers  # noqa: E402
from worker.evaluation.data import Example, load_examples  # noqa: E402
from worker.evaluation.faithfulness import question_seed  # noqa: E402
from worker.evaluation.paired import bootstrap_mean  # noqa: E402
from worker.evaluation.paths import nq_file  # noqa: E402
from worker.explain import run_explanation  # noqa: E402
from worker.shapley import segment  # noqa: E402

Cost = dict[str, Any]


@dataclass(frozen=True)
class Budgets:
    """Coalition budgets of the pipeline's two games and ContextCite's ablation counts."""

    logprob: list[int]
    joint: list[int]
    cites: list[int]


def _stats(session: Any) -> tuple[int, int]:
    return session.stats.forward_passes, session.stats.tokens_computed


def _timed(session: Any, work: Callable[[], int]) -> Cost:
    """Seconds, coalitions (what ``work`` returns), passes and tokens of ``work``."""
    passes, tokens = _stats(session)
    start = time.perf_counter()
    coalitions = work()
    seconds = time.perf_counter() - start
    after = _stats(session)
    return {
        "seconds": seconds,
        "coalitions": coalitions,
        "forward_passes": after[0] - passes,
        "tokens_computed": after[1] - tokens,
    }


def _request(example: Example, value: str, budget: int, seed: int) -> ExplainRequest:
    docs = [{"title": d.title, "text": d.text} for d in example.documents]
    return ExplainRequest(
        question=example.question,
        documents=docs,  # type: ignore[arg-type]
        levels=["document"],
        value=value,  # type: ignore[arg-type]
        estimator="layered",
        budget=budget,
        adaptive=False,
        seed=seed,
        checks=False,  # the estimator's seconds alone
    )


def _contextcite(engine: Any, example: Example, answer: str, sizes: list[int]) -> Cost:
    """Seconds and scores per ablation count (the package runs the largest once)."""
    runs = contextcite.contextcite_runs(engine, example.question, example.documents, answer, sizes)
    return {str(k): (r.seconds, list(map(float, r.scores))) for k, r in runs.items()}


def _attention(engine: Any, example: Example) -> Cost:
    start = time.perf_counter()
    scores = attention.attention_scores(engine, example) or []
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "coalitions": 1, "forward_passes": 1, "scores": scores}


def method_costs(
    engine: Any, example: Example, answer: str, budgets: Budgets
) -> dict[str, Callable[[], Cost]]:
    """Each method as a thunk that opens its own session and measures itself."""

    def fresh() -> Any:
        return engine.open_session(example.question, list(example.documents))

    def loo() -> Cost:
        """y's greedy decoding first (a request starts without it), then the n + 1
        teacher-forced coalitions."""
        session = fresh()
        units = segment.document_units(list(example.documents))
        full = np.ones((1, len(units)), dtype=bool)
        answered = _timed(session, lambda: len(session.answers(units, full)))
        scores: list[float] = []

        def work() -> int:
            scores.extend(rankers.leave_one_out_scores(session, units, answer))
            return len(scores) + 1

        cost = _timed(session, work)
        for key in ("seconds", "forward_passes", "tokens_computed"):
            cost[key] += answered[key]
        return cost | {"answer_seconds": answered["seconds"], "scores": scores}

    def explained(value: str, budget: int) -> Callable[[], Cost]:
        def run() -> Cost:
            session = fresh()
            request = _request(example, value, budget, question_seed(example.id))
            levels: list[Any] = []

            def work() -> int:
                levels.extend(run_explanation(request, session, model=engine.name).levels)
                return int(levels[0].coalitions)

            cost = _timed(session, work)
            return cost | {"scores": logprob_scores(levels[0].features, len(example.documents))}

        return run

    thunks: dict[str, Callable[[], Cost]] = {
        "loo": loo,
        "attention": lambda: _attention(engine, example),
    }
    for budget in budgets.logprob:
        thunks[f"layered-logprob@{budget}"] = explained("logprob", budget)
    for budget in budgets.joint:
        thunks[f"joint@{budget}"] = explained("answer", budget)
    if budgets.cites and contextcite.available(engine) is None:
        thunks["contextcite"] = lambda: _contextcite(engine, example, answer, budgets.cites)
    return thunks


def logprob_scores(features: list[Any], n: int) -> list[float]:
    """Per document, the log p(y) game's score (a ``logprob`` job's own score column)."""
    scores = [0.0] * n
    for f in features:
        scores[f.document] = float(f.logprob if f.logprob is not None else f.score[0])
    return scores


def one_question(
    engine: Any, example: Example, answer: str, budgets: Budgets, turn: int
) -> list[dict[str, Any]]:
    thunks = method_costs(engine, example, answer, budgets)
    names = list(thunks)
    order = names[turn % len(names) :] + names[: turn % len(names)]
    rows: list[dict[str, Any]] = []
    for position, name in enumerate(order):
        cost = thunks[name]()
        if name == "contextcite":
            for size, (seconds, scores) in cost.items():
                rows.append(
                    {
                        "method": f"contextcite-{size}",
                        "seconds": seconds,
                        "coalitions": int(size),
                        "forward_passes": int(size),
                        "position": position,
                        "scores": scores,
                    }
                )
            continue
        rows.append({"method": name, **cost, "position": position})
    decode = next(r["answer_seconds"] for r in rows if r["method"] == "loo")
    for row in rows:
        if row["method"].startswith("contextcite"):
            row["seconds"] += decode
    return rows


def _accuracy(scores: list[float], exact: np.ndarray) -> dict[str, Any]:
    """Agreement with the exact Shapley values of the log p(y) game (the curve's measure)."""
    if len(scores) != len(exact):
        return {}
    return agreement(np.asarray(scores, dtype=float), exact)


def _ratio_cell(logs: list[float]) -> str:
    if not logs:
        return "-"
    ci = bootstrap_mean(logs)
    mean = float(np.exp(np.mean(logs)))
    if ci.low is None or ci.high is None:
        return f"{mean:.2f}"
    return f"{mean:.2f} [{np.exp(ci.low):.2f}, {np.exp(ci.high):.2f}]"


def _mean_cell(rows: list[dict[str, Any]], field: str) -> str:
    values = [r[field] for r in rows if r.get(field) is not None]
    if not values:
        return "-"
    ci = bootstrap_mean(values)
    if ci.low is None:
        return f"{ci.mean:.2f}"
    return f"{ci.mean:.2f} [{ci.low:.2f}, {ci.high:.2f}]"


def table(rows: list[dict[str, Any]]) -> list[str]:
    lines = []
    for model in sorted({r["model"] for r in rows}):
        mine = [r for r in rows if r["model"] == model]
        questions = len({r["id"] for r in mine})
        loo_seconds = np.median([r["seconds"] for r in mine if r["method"] == "loo"])
        lines += [
            f"\n{model}: N = {questions} questions; leave-one-out median {loo_seconds:.1f} s",
            "",
            "| method | coalitions | seconds (median) | x loo seconds | x loo tokens "
            "| Spearman | top-1 | N |",
            "|---|---|---|---|---|---|---|---|",
        ]
        seconds, tokens = log_ratios(mine), log_ratios(mine, "tokens_computed")
        for method in dict.fromkeys(r["method"] for r in mine):
            got = [r for r in mine if r["method"] == method]
            lines.append(
                f"| {method} | {np.mean([r['coalitions'] for r in got]):.1f} "
                f"| {np.median([r['seconds'] for r in got]):.1f} "
                f"| {_ratio_cell(seconds.get((model, method), []))} "
                f"| {_ratio_cell(tokens.get((model, method), []))} "
                f"| {_mean_cell(got, 'spearman')} | {_mean_cell(got, 'top1')} | {len(got)} |"
            )
    return lines


def _recorded(path: Path, model: str, limit: int) -> list[dict[str, Any]]:
    rows = [json.loads(x) for x in path.read_text().splitlines() if x]
    return [r for r in rows if r["model"] == model and "answer" in r][:limit]


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=Path, required=True, help="exact_vs_loo rows.jsonl")
    parser.add_argument("--models", default="gemma-3-270m,smollm2-135m")
    parser.add_argument("--questions", type=int, default=12)
    parser.add_argument("--budgets", default="18,32,64", help="layered on the log p game")
    parser.add_argument("--joint", default="18,64", help="layered on the default game pair")
    parser.add_argument("--contextcite", default="16,32,64", help="ablations ('' for none)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, help="directory for rows.jsonl; a rerun resumes")
    parser.add_argument("--summarize-only", action="store_true")
    args = parser.parse_args(argv)
    path = args.out / "rows.jsonl" if args.out else None
    rows = read_rows(path)
    if not args.summarize_only:
        torch.set_num_threads(args.threads)
        budgets = Budgets(*(_ints(a) for a in (args.budgets, args.joint, args.contextcite)))
        examples = {e.id: e for e in load_examples(nq_file(10))}
        for model in args.models.split(","):
            done = {r["id"] for r in rows if r["model"] == model}
            engine = load_engine(model)
            for turn, record in enumerate(_recorded(args.records, model, args.questions)):
                if record["id"] in done:
                    continue
                full = examples[record["id"]]
                example = replace(full, documents=full.documents[: record["n"]])
                got = one_question(engine, example, record["answer"], budgets, turn)
                exact = exact_shapley(table_of(record, "logprob"), record["n"])
                got = [
                    {"model": model, "id": record["id"], "n": record["n"], **r}
                    | _accuracy(r["scores"], exact)
                    for r in got
                ]
                rows += got
                print(
                    f"{model} {record['id']} "
                    + " ".join(f"{r['method']}={r['seconds']:.1f}s" for r in got),
                    file=sys.stderr,
                )
                append_rows(path, got)
    print("\n".join(table(rows)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
