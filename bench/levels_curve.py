"""Accuracy against cost below the document level (issue 20, item 4): exact sentence tables.

The service refines the passages that matter into sentences and scores a new game whose
players are those sentences plus every other document, whole (``worker/shapley/hierarchy.py``).
This script records that game's full table on real models, so every estimator can be
replayed on it offline as ``bench/estimator_curve.py`` does for documents:

1. a NQ question cut to its first ``--docs`` documents; ``y`` = the full-context greedy answer;
2. every coalition of the documents (log p(y | S), teacher forced): the exact document
   Shapley values, whose top document ``t`` is the one the hierarchy refines (``k = 1``);
3. every coalition of the sentence level's players (the other documents, whole, and the
   sentences of ``t``, in document order as the hierarchy builds them), unless they are
   more than ``--max-players``.

Each table is a row of ``rows.jsonl`` in ``bench/exact_vs_loo.py``'s format (``id`` is
``question/level``), so ``--summarize-only`` (or ``estimator_curve.py --records``) replays
leave-one-out, ContextCite's estimator and ours at ``--budgets`` against the exact values and
prices them at the table's own seconds per coalition.

The word level is not measured here: its game (the other documents and sentences whole
plus every word of the top sentence) has 20-40 players on NQ passages (sentences of 14 to
30 words), beyond any exact table; it needs a sampled reference with its own stderr.

    .venv/bin/python bench/levels_curve.py --models smollm2-135m --questions 20 --docs 6 \\
        --out docs/results/levels-curve
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.estimator_curve import (  # noqa: E402
    answer_tokens,
    key,
    print_table,
    rows_for,
    summarise,
)
from bench.exact_tables import all_masks, exact_shapley  # noqa: E402
from bench.rows import append_rows, read_rows  # noqa: E402
from worker.engine.loading.registry import load_engine  # noqa: E402
from worker.evaluation.data import Example, load_examples  # noqa: E402
from worker.evaluation.faithfulness import mask_key  # noqa: E402
from worker.evaluation.paths import nq_file  # noqa: E402
from worker.shapley.game import normalize_answer  # noqa: E402
from worker.shapley.segment import document_units, sentence_units  # noqa: E402
from worker.shapley.units import Document, Unit  # noqa: E402


def sentence_level(docs: list[Document], top: int) -> list[Unit]:
    """The hierarchy's sentence-level players when it refines document ``top`` alone."""
    out: list[Unit] = []
    for unit in document_units(docs):
        out.extend(sentence_units(docs, top) if unit.document == top else [unit])
    return out


def table(session: Any, units: list[Unit], answer: str) -> tuple[dict[str, float], float]:
    """log p(answer | S) of every coalition of ``units``, and the seconds it took."""
    masks = all_masks(len(units))
    started = time.perf_counter()
    values = session.log_probs(units, masks, answer)
    seconds = time.perf_counter() - started
    return {mask_key(m): float(v) for m, v in zip(masks, values, strict=True)}, seconds


def one_question(engine: Any, example: Example, n: int, max_players: int) -> list[dict]:
    """The document table and, where it fits, the sentence table of one question."""
    docs = list(example.documents[:n])
    session = engine.open_session(example.question, docs)
    units = document_units(docs)
    answer = session.answers(units, np.ones((1, n), dtype=bool))[0]
    base = {"model": engine.name, "answer": answer}
    if not normalize_answer(answer):
        return [{**base, "id": f"{example.id}/document", "skipped": "empty answer"}]
    values, seconds = table(session, units, answer)
    rows = [
        {**base, "id": f"{example.id}/document", "level": "document", "n": n,
         "values": values, "table_seconds": seconds}
    ]  # fmt: skip
    top = int(np.argmax(exact_shapley(values, n)))
    players = sentence_level(docs, top)
    if len(players) > max_players:
        rows.append({**base, "id": f"{example.id}/sentence", "skipped": f"{len(players)} players"})
        return rows
    values, seconds = table(session, players, answer)
    rows.append(
        {**base, "id": f"{example.id}/sentence", "level": "sentence", "n": len(players),
         "values": values, "table_seconds": seconds, "refined": top,
         "units": [[u.level, u.document, u.start, u.end] for u in players]}
    )  # fmt: skip
    return rows


def replay(rows: list[dict], budgets: list[int], repeats: int) -> list[dict]:
    """Every estimator on every recorded table, its game labelled by level."""
    tables = [r for r in rows if "skipped" not in r]
    tokens = answer_tokens(tables)
    out = []
    for record in tables:
        for row in rows_for(record, "logprob", budgets, repeats, None, None, tokens[key(record)]):
            out.append({**row, "game": f"logprob/{record['level']}"})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="smollm2-135m,gemma-3-270m")
    parser.add_argument("--questions", type=int, default=20)
    parser.add_argument("--docs", type=int, default=6)
    parser.add_argument("--max-players", type=int, default=10, help="largest exact table: 2^P")
    parser.add_argument("--budgets", default="8,12,16,24,32,48,64")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True, help="rows.jsonl here; a rerun resumes")
    parser.add_argument("--summarize-only", action="store_true")
    args = parser.parse_args(argv)
    path = args.out / "rows.jsonl"
    rows = read_rows(path)
    if not args.summarize_only:
        torch.set_num_threads(args.threads)
        examples = load_examples(nq_file(10), limit=args.questions)
        for name in args.models.split(","):
            done = {r["id"].split("/")[0] for r in rows if r["model"] == name}
            engine = load_engine(name)
            for example in examples:
                if example.id not in done:
                    new = one_question(engine, example, args.docs, args.max_players)
                    append_rows(path, new)
                    rows += new
                    print(f"{name} {example.id}: {[r.get('n') for r in new]}", file=sys.stderr)
    measured = replay(rows, [int(b) for b in args.budgets.split(",")], args.repeats)
    skipped = sum(1 for r in rows if "skipped" in r)
    print(f"# {len(rows) - skipped} recorded tables ({skipped} skipped), {args.repeats} seeds")
    print_table(summarise(measured))
    return 0


if __name__ == "__main__":
    sys.exit(main())
