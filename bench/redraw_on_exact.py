"""Was a run's draw of coalitions typical? The default request and ContextCite-64 redrawn
on exact tables.

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

The same for the record's ``contextcite-engine-64`` where it has one: the package draws the
same 64 ablations for every question of a given number of documents (it seeds ablation
``i`` with ``i``), so the record's ablations are reproduced from the package's masks and
redrawn from random ones (each document kept with probability 1/2, as the package keeps
them); its solver needs y's token count: the one near the tokenizer's count of y's text
that reproduces the record (``record_tokens``). The last table pairs
the two methods: the default minus ContextCite-64 in the records and in expectation.

    .venv/bin/python bench/redraw_on_exact.py \\
        --exact docs/results/exact-vs-loo-10docs/rows.jsonl \\
        --eval docs/results/nq10-gemma-layered128/results.jsonl

"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.estimator_curve import answer_tokens, cell, cite_fit, key  # noqa: E402
from bench.eval_on_exact import same_target  # noqa: E402
from bench.exact_tables import exact_shapley  # noqa: E402
from service.contract.schemas import DocumentIn, ExplainRequest  # noqa: E402
from worker.evaluation.contextcite import KEEP_PROBABILITY, package_masks  # noqa: E402
from worker.evaluation.faithfulness import mask_key, removal_drop  # noqa: E402
from worker.evaluation.paired import bootstrap_mean, paired_difference  # noqa: E402
from worker.explain import run_explanation  # noqa: E402
from worker.shapley import layered  # noqa: E402
from worker.shapley.oracle import OracleStats  # noqa: E402
from worker.shapley.units import Unit  # noqa: E402

KS = (1, 2, 3)
CITE = "contextcite-engine-64"
CITE_ABLATIONS = 64


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


BEFORE_BOUNDARIES = "layers, middle"
"""``layered``'s design in runs whose ``run.json`` does not name one (before
``worker/shapley/boundary.py``)."""


@contextmanager
def layered_design(design: str) -> Iterator[None]:
    """``layered`` as a run recorded it: today's design, or the one before the ranking's
    boundary coalitions (none reserved)."""
    if design == layered.DESIGN:
        yield
        return
    if design != BEFORE_BOUNDARIES:
        raise ValueError(f"unknown layered design {design!r}")
    saved = layered.BOUNDARIES
    layered.BOUNDARIES = ()
    try:
        yield
    finally:
        layered.BOUNDARIES = saved


def replay_request(
    table_row: dict[str, Any], seed: int, model: str, **fields: Any
) -> tuple[list[float], list[float | None]]:
    """The document-level log p scores (and stderrs) of one service request on the table:
    ``fields`` are the request's own (method, value, budget, estimator); the rest is a
    placeholder, since the table answers every coalition and the seed is explicit."""
    n = table_row["n"]
    request = ExplainRequest(
        question="q",
        documents=[DocumentIn(title=f"T{i}", text=f"document {i}") for i in range(n)],
        levels=["document"],
        seed=seed,
        checks=False,
        **fields,
    )
    level = run_explanation(request, TableOracle(table_row), model=model).levels[0]
    scores: list[float] = [0.0] * n
    stderr: list[float | None] = [None] * n
    for f in level.features:
        scores[f.document] = float(f.logprob) if f.logprob is not None else 0.0
        stderr[f.document] = f.logprob_stderr
    return scores, stderr


def default_level(
    table_row: dict[str, Any], run: dict[str, Any], seed: int
) -> tuple[list[float], list[float | None]]:
    """The document-level log p scores of the run's default request (method ``shapley``,
    its budget and estimator, ``layered`` in the run's design) on the table, with
    ``seed``, and their stderrs."""
    with layered_design(run.get("extra", {}).get("layered", BEFORE_BOUNDARIES)):
        return replay_request(
            table_row, seed, run["model"], budget=run["budget"], estimator=run["estimator"]
        )


def default_scores(table_row: dict[str, Any], run: dict[str, Any], seed: int) -> list[float]:
    """:func:`default_level`'s scores alone."""
    return default_level(table_row, run, seed)[0]


def cite_scores(table_row: dict[str, Any], seed: int | None, tokens: int) -> list[float]:
    """ContextCite-64's scores on the table: the package's own ablations (``seed`` None, as
    the run drew them) or random ones from ``seed``."""
    n = table_row["n"]
    if seed is None:
        masks = package_masks(n, CITE_ABLATIONS)
    else:
        masks = np.random.default_rng(seed).random((CITE_ABLATIONS, n)) < KEEP_PROBABILITY
    return cite_fit(table_row["values"], masks, "logprob", tokens).tolist()


def record_tokens(table_row: dict[str, Any], record: dict[str, Any], encoded: int) -> int:
    """y's token count as the run's ContextCite solver had it. The tables keep y's text,
    not its ids, and re-encoding the text can be a token off the ids the model generated
    (on gemma the answer "2011" is one token longer as generated): of the counts within 3
    of the encoding's, the one whose fit on the package's ablations reproduces the
    record's scores best."""
    own = np.array(record["methods"][CITE]["scores"])

    def miss(tokens: int) -> float:
        return float(np.max(np.abs(np.array(cite_scores(table_row, None, tokens)) - own)))

    return min(range(max(1, encoded - 3), encoded + 4), key=miss)


def one_question(
    table_row: dict[str, Any],
    record: dict[str, Any],
    run: dict[str, Any],
    seeds: int,
    method: str = "shapley",
    tokens: int = 1,
) -> dict[str, Any]:
    """drop@k of the record's draw, of ``seeds`` redraws (mean, min) and of exact Shapley,
    for the record's default request (``method`` shapley) or its ContextCite-64
    (``method`` CITE; ``tokens``: y's token count, which its solver divides by)."""
    values, priority = table_row["values"], record["tie_priority"]

    def scores(seed: int | None) -> list[float]:
        """The method's scores from ``seed``; None: the record's own draw."""
        if method == "shapley":
            return default_scores(table_row, run, record["seed"] if seed is None else seed)
        return cite_scores(table_row, seed, tokens)

    own = record["methods"][method]["scores"]
    again = scores(None)
    draws = [scores(1000 + s) for s in range(seeds)]
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


def paired(default: list[dict[str, Any]], cite: list[dict[str, Any]]) -> list[str]:
    """The default minus ContextCite-64 on the questions both were redrawn on: in the
    records (one draw each), in expectation (the redraws' means), and exact Shapley minus
    ContextCite-64's expectation (the estimands' gap, as far as CC-64 reaches its own)."""
    mine = {q["id"]: q for q in default}
    both = [(mine[q["id"]], q) for q in cite if q["id"] in mine]
    lines = [
        f"| drop@k (N = {len(both)}) | records | expectations | exact Shapley minus "
        "ContextCite-64's expectation |",
        "|---|---|---|---|",
    ]
    for k in KS:
        ours, theirs = ([q[f"drop@{k}"] for q in side] for side in zip(*both, strict=True))
        cells = [
            paired_difference([d[a] for d in ours], [d[b] for d in theirs])
            for a, b in (("record", "record"), ("redraws", "redraws"), ("exact", "redraws"))
        ]
        lines.append(f"| drop@{k} | " + " | ".join(cell(c) for c in cells) + " |")
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
    cited = [t for t in tables if CITE in records[t["id"]]["methods"]]
    if cited:
        encoded = answer_tokens(cited)
        cite = [
            one_question(t, records[t["id"]], run, args.seeds, CITE, record_tokens(
                t, records[t["id"]], encoded[key(t)]))
            for t in cited
        ]  # fmt: skip
        print(f"\n# {CITE} on the {len(cited)} of them whose record has it: the package's "
              f"ablations reproduced, {args.seeds} random draws of 64")  # fmt: skip
        print("\n".join(table(cite)))
        print("\n# the default minus ContextCite-64, drop@k in nats")
        print("\n".join(paired(per_question, cite)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
