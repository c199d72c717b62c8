"""This project's document-level explanation next to Captum, ContextCite and shap.

Same model (the engine's resident model), same questions, same prompt, same segmentation
(one feature per document). Per method: seconds per explanation, model forward passes,
gold-passage recall@1, and agreement (Spearman, top-1 match) with exact Shapley values
(all 2^n coalitions) on the first ``--reference`` questions, for both games: the
categorical answer game this project explains by default, and the log-probability game
the peers explain. Ratios are to this project's default (``ours``).

    .venv/bin/python bench/peers.py --model smollm2-135m --limit 10 --budget 64

Needs the ``bench`` extra (captum, context-cite, shap). Never imported by the service.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import peer_methods as pm  # noqa: E402

from service.contract.schemas import DocumentIn, ExplainRequest  # noqa: E402
from worker.evaluation import metrics  # noqa: E402
from worker.evaluation.data import Example, load_examples  # noqa: E402
from worker.evaluation.rankers import document_scores  # noqa: E402
from worker.explain import run_explanation  # noqa: E402
from worker.shapley import segment  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "nq" / "nq-open-dev-10docs.jsonl.gz"
METHODS = ("ours", "contextcite", "shap", "captum-fa", "ours-logprob", "captum-svs")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--limit", type=int, default=10)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--budget", type=int, default=64, help="coalitions for sampled methods")
    parser.add_argument("--reference", type=int, default=3, help="questions with exact Shapley")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument(
        "--docs", type=int, default=0, help="keep the gold passage and the first K-1 others"
    )
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "peers-out")
    parser.add_argument(
        "--summarize-only", action="store_true", help="tabulate the parts already computed"
    )
    return parser.parse_args(argv)


def shrink(example: Example, k: int) -> Example:
    """The gold passage(s) plus the first others, up to ``k`` passages, in their given order
    (a smaller game when the machine cannot afford the full one)."""
    if k <= 0 or k >= len(example.documents):
        return example
    others = [i for i in range(len(example.documents)) if i not in example.relevant]
    keep = sorted([*example.relevant, *others[: k - len(example.relevant)]])
    return replace(
        example,
        documents=tuple(example.documents[i] for i in keep),
        relevant=frozenset(keep.index(i) for i in example.relevant),
        docids=tuple(example.docids[i] for i in keep) if example.docids else (),
    )


def _ours(engine: Any, example: Example, args: argparse.Namespace, value: str) -> dict[str, Any]:
    session = engine.open_session(
        example.question, list(example.documents), max_new_tokens=args.max_new_tokens
    )
    request = ExplainRequest(
        question=example.question,
        documents=[DocumentIn(title=d.title, text=d.text) for d in example.documents],
        levels=["document"],
        budget=args.budget,
        value=value,  # type: ignore[arg-type]
        max_new_tokens=args.max_new_tokens,
        checks=False,  # the explanation's cost alone, as the peers' is
    )
    start = time.perf_counter()
    result = run_explanation(request, session, model=args.model)
    seconds = time.perf_counter() - start
    _log(f"  ours ({value} game): {seconds:.1f}s, {result.stats.forward_passes} passes")
    wanted = metrics.normalize_answer(result.answer)
    index = next(
        (i for i, c in enumerate(result.candidates) if metrics.normalize_answer(c.text) == wanted),
        0,
    )
    return {
        "scores": document_scores(result, len(example.documents), index),
        "seconds": seconds,
        "passes": result.stats.forward_passes,
        "answer": result.answer,
    }


def _job(engine: Any, example: Example, answer: str, args: argparse.Namespace) -> pm.Job:
    from worker.engine.prompt_layout import PromptLayout
    from worker.engine.prompts import Codec, document_block

    docs = list(example.documents)
    units = segment.document_units(docs)
    tok = engine.tokenizer
    layout = PromptLayout(Codec(tok), example.question, docs, "remove", tok.pad_token_id or 0)
    return pm.Job(
        model=engine.model,
        tokenizer=tok,
        question=example.question,
        blocks=[document_block(k, d)[0] for k, d in enumerate(docs, 1)],
        answer=answer,
        prompt_ids=lambda keep: list(layout.ids(units, np.asarray(keep, dtype=bool))),
        budget=args.budget,
        max_new_tokens=args.max_new_tokens,
    )


def _peer(job: pm.Job, method: str) -> dict[str, Any]:
    runs = {
        "captum-fa": lambda: pm.captum_scores(job, "feature_ablation"),
        "captum-svs": lambda: pm.captum_scores(job, "shapley_sampling"),
        "contextcite": lambda: pm.contextcite_scores(job),
        "shap": lambda: pm.shap_scores(job),
    }
    with pm.counted_passes(job.model) as passes:
        start = time.perf_counter()
        try:
            scores = runs[method]()
        except Exception as exc:  # a peer that does not run here is reported, not fatal
            _log(f"  {method}: failed: {exc!r}"[:300])
            return {"error": f"{type(exc).__name__}: {exc}"[:300]}
        seconds = time.perf_counter() - start
    _log(f"  {method}: {seconds:.1f}s, {passes[0]} passes")
    return {"scores": scores, "seconds": seconds, "passes": passes[0]}


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _reference(engine: Any, example: Example, answer: str) -> dict[str, list[float]]:
    """Exact Shapley values of both games over all 2^n document coalitions."""
    docs = list(example.documents)
    units = segment.document_units(docs)
    session = engine.open_session(example.question, docs, max_new_tokens=16)
    masks = pm.all_masks(len(units))
    logp = np.asarray(session.log_probs(units, masks, answer), dtype=float)
    wanted = metrics.normalize_answer(answer)
    hits = [float(metrics.normalize_answer(a) == wanted) for a in session.answers(units, masks)]
    n = len(units)
    return {
        "logprob": pm.exact_shapley(logp, n).tolist(),
        "answer": pm.exact_shapley(np.array(hits), n).tolist(),
    }


def spearman(a: list[float], b: list[float]) -> float | None:
    """Spearman correlation with average ranks for ties; None when either side is flat."""
    ra, rb = _ranks(np.asarray(a)), _ranks(np.asarray(b))
    if ra.std() == 0 or rb.std() == 0:
        return None
    return float(np.corrcoef(ra, rb)[0, 1])


def _ranks(x: np.ndarray) -> np.ndarray:
    order = x.argsort(kind="stable")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(len(x))
    for value in np.unique(x):
        tied = x == value
        ranks[tied] = ranks[tied].mean()
    return ranks


class Parts:
    """Per-question, per-method results appended to a JSONL file as each one finishes, so
    an interrupted run keeps every finished method and a rerun does only what is missing."""

    def __init__(self, path: Path, read_only: bool = False) -> None:
        self.path = path
        self.read_only = read_only
        self.done: dict[tuple[str, str], Any] = {}
        for line in _lines(path):
            part = json.loads(line)
            self.done[(part["id"], part["part"])] = part["value"]

    def get_or_run(self, qid: str, part: str, work: Any) -> Any:
        if (qid, part) not in self.done and self.read_only:
            return {"error": "not run"}
        if (qid, part) not in self.done:
            value = work()
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps({"id": qid, "part": part, "value": value}) + "\n")
            self.done[(qid, part)] = value
        return self.done[(qid, part)]


def evaluate_question(
    engine: Any, example: Example, args: argparse.Namespace, ref: bool, parts: Parts
) -> dict[str, Any] | None:
    """Every method on one question (cheapest first); exact references when ``ref``.
    None when nothing was computed for it (``--summarize-only``)."""
    row: dict[str, Any] = {"id": example.id, "relevant": sorted(example.relevant), "methods": {}}
    ours = parts.get_or_run(example.id, "ours", lambda: _ours(engine, example, args, "answer"))
    if "error" in ours:
        return None
    _log(f"  ours: {ours['seconds']:.1f}s, {ours['passes']} passes, answer {ours['answer']!r}")
    row["answer"] = ours["answer"]
    row["methods"]["ours"] = ours
    job = _job(engine, example, ours["answer"], args)
    for method in args.methods:
        if method == "ours" or not job.answer_ids():
            continue
        if method == "ours-logprob":
            work = lambda: _ours(engine, example, args, "logprob")  # noqa: E731
        else:
            work = lambda m=method: _peer(job, m)  # noqa: E731
        row["methods"][method] = parts.get_or_run(example.id, method, work)
    if ref and job.answer_ids():
        work = lambda: _reference(engine, example, ours["answer"])  # noqa: E731
        reference = parts.get_or_run(example.id, "reference", work)
        if "error" not in reference:
            row["reference"] = reference
    _score_row(row, example)
    return row


def _score_row(row: dict[str, Any], example: Example) -> None:
    for run in row["methods"].values():
        if "scores" not in run:
            continue
        ranking = metrics.rank_by_scores(run["scores"])
        run["recall@1"] = metrics.recall_at_k(ranking, example.relevant, 1)
        for game, exact in row.get("reference", {}).items():
            run[f"spearman_{game}"] = spearman(run["scores"], exact)
            run[f"top1_{game}"] = float(ranking[0] == metrics.rank_by_scores(exact)[0])


def _mean(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return sum(kept) / len(kept) if kept else None


def summarize(rows: list[dict[str, Any]], methods: list[str]) -> dict[str, dict[str, Any]]:
    keys = ["seconds", "passes", "recall@1", "spearman_answer", "spearman_logprob"]
    keys += ["top1_answer", "top1_logprob"]
    out: dict[str, dict[str, Any]] = {}
    for m in methods:
        runs = [r["methods"][m] for r in rows if m in r["methods"]]
        ok = [run for run in runs if "scores" in run]
        out[m] = {k: _mean([run.get(k) for run in ok]) for k in keys}
        out[m]["n"] = len(ok)
        out[m]["errors"] = sorted({run["error"] for run in runs if "error" in run})
    return out


def _fmt(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def markdown(summary: dict[str, dict[str, Any]]) -> str:
    base = summary.get("ours", {})
    head = "| method | n | s/expl. | fwd passes | recall@1 | ρ answer-game | ρ logp-game |"
    head += " top-1 = exact (logp) | time ÷ ours | passes ÷ ours |"
    lines = [head, "|" + "---|" * 10]
    for m, s in summary.items():
        t_ratio = s["seconds"] / base["seconds"] if s["seconds"] and base.get("seconds") else None
        p_ratio = s["passes"] / base["passes"] if s["passes"] and base.get("passes") else None
        cells = [m, str(s["n"]), _fmt(s["seconds"]), _fmt(s["passes"], 0), _fmt(s["recall@1"])]
        cells += [_fmt(s["spearman_answer"]), _fmt(s["spearman_logprob"])]
        cells += [_fmt(s["top1_logprob"]), _fmt(t_ratio), _fmt(p_ratio)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from worker.engine.loading.registry import load_engine

    engine = load_engine(args.model)
    examples = [shrink(e, args.docs) for e in load_examples(args.data, limit=args.limit)]
    args.out.mkdir(parents=True, exist_ok=True)
    tag = f"{args.model}-d{args.docs or 'all'}-b{args.budget}"
    parts = Parts(args.out / f"parts-{tag}.jsonl", read_only=args.summarize_only)
    rows = []
    for i, example in enumerate(examples):
        row = evaluate_question(engine, example, args, i < args.reference, parts)
        if row is not None:
            rows.append(row)
        _log(f"[{i + 1}/{len(examples)}] {example.id} done")
    summary = summarize(rows, list(args.methods))
    (args.out / f"summary-{tag}.json").write_text(json.dumps(summary, indent=2) + "\n")
    table = markdown(summary)
    (args.out / f"summary-{tag}.md").write_text(table)
    print(table)
    return 0


def _lines(path: Path) -> list[str]:
    return [ln for ln in path.read_text().splitlines() if ln.strip()] if path.exists() else []


if __name__ == "__main__":
    sys.exit(main())
