"""``textgenshap eval``: run the harness over a NQ or MIRACL JSONL file.

Results go to ``OUT/results.jsonl`` (one line per question, appended as each finishes; a
rerun skips the ids already there), ``OUT/summary.json`` and ``OUT/summary.md``. The run's
settings are kept in ``OUT/run.json``; resuming with different settings is refused, so one
directory never mixes two configurations. Imports stay light until ``main`` runs.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path
from typing import Any

DEFAULT_METHODS = ("given", "loo", "attention", "shapley", "banzhaf")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``textgenshap eval``."""
    parser.add_argument("--data", type=Path, required=True, help="NQ or MIRACL .jsonl(.gz)")
    parser.add_argument("--limit", type=int, default=None, help="first N questions only")
    parser.add_argument(
        "--per-label", type=int, default=None, help="first N questions of each MIRACL label"
    )
    parser.add_argument(
        "--model", default="gemma-3-270m", help="registry name, HF id, path or py:module:attr"
    )
    parser.add_argument(
        "--levels", nargs="+", default=["document"], choices=["document", "sentence", "word"]
    )
    parser.add_argument("--budget", type=int, default=64, help="coalitions per level")
    parser.add_argument("--out", type=Path, default=None, help="results directory")
    parser.add_argument("--qrels", type=Path, default=None, help="TREC qrels: qid Q0 docid rel")
    parser.add_argument(
        "--methods", nargs="+", default=list(DEFAULT_METHODS), choices=list(DEFAULT_METHODS)
    )
    parser.add_argument("--masking", default="remove", choices=["remove", "pad"])
    parser.add_argument(
        "--value",
        default="answer",
        choices=["answer", "logprob"],
        help="game explained: greedy answer string, or log p of the full-context answer",
    )
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=None, help="cpu / cuda (default: best available)")


def _out_dir(args: argparse.Namespace) -> Path:
    if args.out is not None:
        return Path(args.out)
    stem = args.data.name.split(".")[0]
    return Path("eval-out") / f"{stem}-{args.model.replace('/', '_').replace(':', '_')}"


def _config(args: argparse.Namespace) -> Any:
    from worker.evaluation.runner import EvalConfig

    return EvalConfig(
        model=args.model,
        levels=tuple(args.levels),
        budget=args.budget,
        methods=tuple(args.methods),
        masking=args.masking,
        value=args.value,
        max_new_tokens=args.max_new_tokens,
        seed=args.seed,
        extra={"data": args.data.name, "qrels": args.qrels.name if args.qrels else None},
    )


def _check_run_file(out: Path, settings: dict[str, Any]) -> str | None:
    """None when ``out`` is new or holds the same settings, else why it cannot resume."""
    path = out / "run.json"
    settings = json.loads(json.dumps(settings))  # tuples as lists, as read back
    if not path.exists():
        out.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")
        return None
    previous = json.loads(path.read_text(encoding="utf-8"))
    if previous != settings:
        return f"{out} holds a run with other settings ({path}); use another --out"
    return None


def _load_engine(args: argparse.Namespace) -> Any:
    """The registry's engine; ``py:module:attr`` factories are called directly, so duck-typed
    test engines (``tests.fakes``) need not subclass the engine ABC."""
    if args.model.startswith("py:"):
        _, module_name, attr = args.model.split(":", 2)
        return getattr(importlib.import_module(module_name), attr)()
    from worker.engine.registry import load_engine

    return load_engine(args.model, device=args.device)


def _run(args: argparse.Namespace, out: Path, config: Any) -> list[dict[str, Any]]:
    """Evaluate the questions not yet in ``out``; returns the records of this file's slice."""
    from tqdm import tqdm

    from worker.engine.errors import EngineError
    from worker.evaluation.data import load_examples, load_qrels
    from worker.evaluation.runner import evaluate
    from worker.evaluation.store import ResultStore

    qrels = load_qrels(args.qrels) if args.qrels else None
    examples = load_examples(args.data, limit=args.limit, qrels=qrels, per_label=args.per_label)
    store = ResultStore(out / "results.jsonl")
    done = store.done_ids()
    todo = [e for e in examples if e.id not in done]
    engine = _load_engine(args) if todo else None
    bar = tqdm(
        todo,
        desc=f"eval {args.data.name}",
        unit="q",
        initial=len(examples) - len(todo),
        total=len(examples),
    )
    for example in bar:
        try:
            store.append(evaluate(engine, example, config))
        except EngineError as exc:  # e.g. context too long: recorded, skipped on rerun
            error = {"type": type(exc).__name__, "message": str(exc)}
            store.append({"id": example.id, "error": error})
    wanted = {e.id for e in examples}
    return [r for r in store.records() if r["id"] in wanted]


def main(args: argparse.Namespace) -> int:
    """Run, then write summary.json and summary.md; prints the Markdown table."""
    from worker.evaluation.summary import summarize, to_markdown

    out = _out_dir(args)
    config = _config(args)
    problem = _check_run_file(out, config.as_json())
    if problem is not None:
        print(problem, file=sys.stderr)
        return 2
    records = _run(args, out, config)
    summary = summarize(records, config.ks)
    summary["config"] = config.as_json()
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    title = f"{args.data.name} · {args.model} · budget {args.budget} · {'/'.join(args.levels)}"
    markdown = to_markdown(summary, title)
    (out / "summary.md").write_text(markdown, encoding="utf-8")
    print(markdown)
    return 0
