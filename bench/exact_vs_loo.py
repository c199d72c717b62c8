"""Shapley against leave-one-out with no sampling noise: is the removal gap the estimand?

On NQ with 10 documents, the default (sampled) Shapley explanation trails leave-one-out
on top-k removal (docs/results.md). Two causes are possible: the budget's sampling noise,
or the estimand itself (Shapley averages a document's effect over all coalitions, while
top-k removal asks what happens when it leaves the *full* context, which is
leave-one-out's own definition). This script separates them. For each of the first
``--questions`` questions cut to their first ``--docs`` documents it enumerates every
coalition once on one engine session: ``log p(y | S)`` of the model's full-context answer
``y`` (teacher forced) and the greedy answer. From that table it computes exactly:

- ``shapley``: exact Shapley values of the log p(y) game;
- ``banzhaf``: exact Banzhaf values of the same game;
- ``loo``: leave-one-out, v(N) - v(N without i);
- ``loi``: leave-one-in, v({i}) - v(empty);
- ``default``: the service's default request (``levels=["document"]``, default budget and
  estimator, ranking by the log p game); at up to 7 documents the default budget (128)
  enumerates, so this is the exact Shapley value as the service computes it;
- ``sampled32``: the same request at budget 32 (the evaluation harness's budget), which
  samples when 2^docs > 32: the sampling noise on top of the estimand.
Both requests' coalitions come from the session's memo: no extra model time, scored on
the same table.

Every ranking (ties broken by one seeded random order per question, shared by all) is
scored on the same table: the drop in log p(y) when its top k documents are removed, the
flip rate (greedy answer no longer y) after that removal, whether keeping only the top k
keeps y, and the LDS over every coalition but the full and empty one. Paired differences
against leave-one-out come with bootstrap 95% intervals (N = questions).

    .venv/bin/python bench/exact_vs_loo.py --models gemma-3-270m,smollm2-135m \\
        --questions 30 --docs 6 --out docs/results/exact-vs-loo

``--fast`` then records the same tables in the engine's fast mode (``fast_rows.jsonl``
beside ``rows.jsonl``: log p of the same y, greedy answers, seconds), so that
``bench/estimator_curve.py`` can put fast mode and a fast-mode control variate on the same
curve.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.exact_tables import (  # noqa: E402
    all_masks,
    exact_banzhaf,
    exact_shapley,
    leave_one_in,
    leave_one_out,
)
from bench.rows import append_rows  # noqa: E402
from service.contract.schemas import ExplainRequest  # noqa: E402
from worker.engine.loading.registry import load_engine  # noqa: E402
from worker.evaluation.data import Example, load_examples  # noqa: E402
from worker.evaluation.faithfulness import (  # noqa: E402
    keep_mask,
    lds,
    mask_key,
    question_seed,
    removal_mask,
    tie_order,
    top_documents,
)
from worker.evaluation.paired import (  # noqa: E402
    bootstrap_mean,
    expected_recall_at_k,
    paired_difference,
)
from worker.evaluation.paths import nq_file  # noqa: E402
from worker.explain import run_explanation  # noqa: E402
from worker.shapley import segment  # noqa: E402
from worker.shapley.game import normalize_answer  # noqa: E402

KS = (1, 2, 3)
METHODS = ("shapley", "banzhaf", "loo", "loi", "default", "sampled32")


def score(
    ranking: list[float],
    values: dict[str, float],
    answers: dict[str, str],
    y: str,
    priority: list[int],
) -> dict[str, Any]:
    """The removal, flip, keep and LDS checks of one method's scores on the table."""
    n = len(ranking)
    top = top_documents(ranking, priority)
    full = values["1" * n]
    out: dict[str, Any] = {}
    for k in KS:
        removed = mask_key(removal_mask(n, top, k))
        kept = mask_key(keep_mask(n, top, k))
        out[f"drop@{k}"] = full - values[removed]
        out[f"flip@{k}"] = float(normalize_answer(answers[removed]) != y)
        out[f"keep@{k}"] = float(normalize_answer(answers[kept]) == y)
    keys = [k for k in values if "1" in k and "0" in k]
    masks = np.array([[c == "1" for c in k] for k in keys], dtype=bool)
    out["lds"] = lds(ranking, masks, [values[k] for k in keys])
    out["top"] = top
    return out


def one_question(engine: Any, example: Example, n: int) -> dict[str, Any]:
    documents = list(example.documents[:n])
    units = segment.document_units(documents)
    session = engine.open_session(example.question, documents)
    masks = all_masks(n)
    started = time.perf_counter()
    texts = session.answers(units, masks)  # the full coalition first, as the pipeline does
    y_text = texts[0]
    if not normalize_answer(y_text):  # no answer to explain: no log p game (counted)
        return {"id": example.id, "n": n, "skipped": "empty full-context answer"}
    logps = session.log_probs(units, masks, y_text)
    table_seconds = time.perf_counter() - started
    keys = [mask_key(m) for m in masks]
    values = {k: float(v) for k, v in zip(keys, logps, strict=True)}
    answers = dict(zip(keys, texts, strict=True))
    docs = [{"title": d.title, "text": d.text} for d in documents]
    request = ExplainRequest(
        question=example.question, documents=docs, levels=["document"], checks=False
    )
    started = time.perf_counter()
    level = run_explanation(request, session, model=engine.name).levels[0]
    default_seconds = time.perf_counter() - started
    cheap = request.model_copy(update={"budget": 32})
    sampled = run_explanation(cheap, session, model=engine.name).levels[0]
    rankings = {
        "shapley": exact_shapley(values, n).tolist(),
        "banzhaf": exact_banzhaf(values, n).tolist(),
        "loo": leave_one_out(values, n).tolist(),
        "loi": leave_one_in(values, n).tolist(),
        "default": [float(f.logprob) for f in level.features],
        "sampled32": [float(f.logprob) for f in sampled.features],
    }
    y = normalize_answer(y_text)
    priority = tie_order(n, question_seed(example.id))
    return {
        "id": example.id,
        "n": n,
        "answer": y_text,
        "correct": any(normalize_answer(g) == y for g in example.answers),
        "values": values,
        "answers": answers,
        "rankings": rankings,
        "default_estimator": level.estimator,
        "default_coalitions": level.coalitions,
        "sampled32_estimator": sampled.estimator,
        "sampled32_coalitions": sampled.coalitions,
        "table_seconds": table_seconds,
        "default_seconds": default_seconds,
        "checks": {m: score(r, values, answers, y, priority) for m, r in rankings.items()},
    }


def fast_table(engine: Any, example: Example, exact_row: dict[str, Any]) -> dict[str, Any]:
    """The same table in fast mode (the full-context cache with removed documents masked
    out): log p of the exact row's y and the greedy answer for every coalition, for
    ``bench/estimator_curve.py --fast``."""
    n = exact_row["n"]
    documents = list(example.documents[:n])
    units = segment.document_units(documents)
    session = engine.open_session(example.question, documents, fast=True)
    masks = all_masks(n)
    started = time.perf_counter()
    texts = session.answers(units, masks)
    logps = session.log_probs(units, masks, exact_row["answer"])
    keys = [mask_key(m) for m in masks]
    return {
        "model": exact_row["model"],
        "id": example.id,
        "n": n,
        "mode": "fast",
        "values": {k: float(v) for k, v in zip(keys, logps, strict=True)},
        "answers": dict(zip(keys, texts, strict=True)),
        "table_seconds": time.perf_counter() - started,
    }


def record_fast_tables(rows: list[dict[str, Any]], out: Path, models: list[str]) -> None:
    """Fast-mode tables for the exact rows of ``out`` (resumes ``fast_rows.jsonl``)."""
    path = out / "fast_rows.jsonl"
    done = {(r["model"], r["id"]) for r in map(json.loads, _lines(path))}
    todo = [r for r in rows if "values" in r and r["model"] in models]
    examples = {e.id: e for e in load_examples(nq_file(10))}
    for name in models:
        engine = load_engine(name)
        for row in todo:
            if row["model"] != name or (name, row["id"]) in done:
                continue
            fast = fast_table(engine, examples[row["id"]], row)
            print(f"{name} {row['id']} fast {fast['table_seconds']:.0f} s", file=sys.stderr)
            append_rows(path, [fast])


def _lines(path: Path) -> list[str]:
    return [x for x in path.read_text().splitlines() if x] if path.exists() else []


def cell(ci: Any, digits: int = 2) -> str:
    if ci.mean is None:
        return "-"
    if ci.low is None:
        return f"{ci.mean:.{digits}f}"
    return f"{ci.mean:.{digits}f} [{ci.low:.{digits}f}, {ci.high:.{digits}f}]"


def table(
    rows: list[dict[str, Any]], relevant: dict[str, frozenset[int]] | None = None
) -> list[str]:
    metrics = [f"drop@{k}" for k in KS] + [f"flip@{k}" for k in KS] + ["keep@1", "lds"]
    out = []
    for model in sorted({r["model"] for r in rows}):
        got = [r for r in rows if r["model"] == model and "skipped" not in r]
        skipped = sum(1 for r in rows if r["model"] == model and "skipped" in r)
        n = got[0]["n"]
        out += [
            f"\n{model}: N = {len(got)} questions cut to {n} documents, all {2**n} coalitions "
            f"enumerated; {np.mean([r['table_seconds'] for r in got]):.0f} s per table; "
            f"{skipped} skipped (empty full-context answer)",
            "",
            "| method | " + " | ".join(metrics) + " |",
            "|---|" + "---|" * len(metrics),
        ]
        for method in METHODS:
            cells = [bootstrap_mean([r["checks"][method][m] for r in got]) for m in metrics]
            out.append(f"| {method} | " + " | ".join(cell(c) for c in cells) + " |")
        out += ["", "paired difference against leave-one-out (method - loo):", ""]
        out += ["| method | " + " | ".join(metrics) + " |", "|---|" + "---|" * len(metrics)]
        for method in METHODS:
            if method == "loo":
                continue
            cells = [
                paired_difference(
                    [r["checks"][method][m] for r in got], [r["checks"]["loo"][m] for r in got]
                )
                for m in metrics
            ]
            out.append(f"| {method} | " + " | ".join(cell(c) for c in cells) + " |")
        same = np.mean(
            [r["checks"]["shapley"]["top"][0] == r["checks"]["loo"]["top"][0] for r in got]
        )
        out.append(f"\nexact Shapley and leave-one-out pick the same top document in {same:.2f}")
        if relevant is not None:
            out += gold_recall(got, relevant)
    return out


def gold_recall(rows: list[dict[str, Any]], relevant: dict[str, frozenset[int]]) -> list[str]:
    """Expected recall@1 of the gold passage (ties broken at random) on the questions whose
    gold passage is among the table's documents: the estimands compared without sampling
    noise (the harness's recall, on exact values)."""
    golden = [r for r in rows if {i for i in relevant.get(r["id"], ()) if i < r["n"]}]
    if not golden:
        return []
    recall = {
        method: [
            expected_recall_at_k(
                r["rankings"][method], frozenset(i for i in relevant[r["id"]] if i < r["n"]), 1
            )
            for r in golden
        ]
        for method in METHODS
    }
    out = [
        f"\ngold passage among the {golden[0]['n']} documents in N = {len(golden)} questions; "
        "expected recall@1 (ties at random), and paired against leave-one-out:",
        "",
        "| method | recall@1 | minus leave-one-out |",
        "|---|---|---|",
    ]
    for method, values in recall.items():
        difference = paired_difference(values, recall["loo"]) if method != "loo" else None
        out.append(
            f"| {method} | {cell(bootstrap_mean(values))} | "
            f"{cell(difference) if difference else '-'} |"
        )
    return out


def chosen_examples(questions: int, ids: str | None) -> list[Example]:
    """The first ``questions`` NQ questions, or those named by ``ids`` in the order given
    (a question picked for what a run did to it is a selected sample: say so with its
    table)."""
    if not ids:
        return load_examples(nq_file(10), limit=questions)
    wanted = [i.strip() for i in ids.split(",") if i.strip()]
    by_id = {e.id: e for e in load_examples(nq_file(10))}
    missing = [i for i in wanted if i not in by_id]
    if missing:
        raise SystemExit(f"--ids: no NQ question with id {', '.join(missing)}")
    return [by_id[i] for i in wanted]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="gemma-3-270m,smollm2-135m")
    parser.add_argument("--questions", type=int, default=30)
    parser.add_argument(
        "--ids", help="table these NQ question ids (comma-separated), not the first --questions"
    )
    parser.add_argument("--docs", type=int, default=6)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, help="directory for rows.jsonl; a rerun resumes")
    parser.add_argument("--summarize-only", action="store_true")
    parser.add_argument(
        "--fast", action="store_true", help="record fast-mode tables of the exact rows in --out"
    )
    args = parser.parse_args(argv)
    path = args.out / "rows.jsonl" if args.out else None
    rows = [json.loads(x) for x in path.read_text().splitlines()] if path and path.exists() else []
    if args.fast:
        torch.set_num_threads(args.threads)
        record_fast_tables(rows, args.out, args.models.split(","))
        return 0
    if not args.summarize_only:
        torch.set_num_threads(args.threads)
        examples = chosen_examples(args.questions, args.ids)
        for name in args.models.split(","):
            done = {r["id"] for r in rows if r["model"] == name}
            engine = load_engine(name)
            for example in examples:
                if example.id in done:
                    continue
                row = {"model": name, **one_question(engine, example, args.docs)}
                rows.append(row)
                print(f"{name} {example.id} {row.get('table_seconds', 0):.0f} s", file=sys.stderr)
                append_rows(path, [row])
    relevant = {e.id: e.relevant for e in load_examples(nq_file(10))}
    print("\n".join(table(rows, relevant)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
