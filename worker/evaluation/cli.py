"""``textgenshap eval``: run the harness over a NQ or MIRACL JSONL file.

Results go to ``OUT/results.jsonl`` (one line per question, appended as each finishes; a
rerun skips the ids already there), ``OUT/summary.json`` and ``OUT/summary.md``. The run's
settings are kept in ``OUT/run.json``; resuming with different settings is refused, so one
directory never mixes two configurations, with one exception: resuming with more methods
adds them to the questions still to run (``run.json`` notes, under ``methods_added``, how
many records came before each addition; the report counts every method's own N).
``--summarize-only`` rebuilds the summary from the records without loading a model.
Imports stay light until ``main`` runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from worker.engine.loading.factories import is_factory, load_factory
from worker.evaluation.methods import METHODS
from worker.evaluation.store import ResultStore
from worker.shapley.estimators import AUTO_MEANS, ESTIMATORS
from worker.shapley.layered import DESIGN as LAYERED_DESIGN


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``textgenshap eval``."""
    parser.add_argument(
        "--data", type=Path, default=None, help="NQ or MIRACL .jsonl(.gz) (needed to run)"
    )
    parser.add_argument("--limit", type=int, default=None, help="first N questions only")
    parser.add_argument(
        "--per-label", type=int, default=None, help="first N questions of each MIRACL label"
    )
    parser.add_argument(
        "--model", default="gemma-3-270m", help="registry name, HF id, path or py:module:attr"
    )
    _explanation_arguments(parser)
    parser.add_argument("--out", type=Path, default=None, help="results directory")
    parser.add_argument("--qrels", type=Path, default=None, help="TREC qrels: qid Q0 docid rel")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--masking", default="remove", choices=["remove", "pad"])
    parser.add_argument(
        "--heldout", type=int, default=32, help="held-out random coalitions per question (LDS)"
    )
    parser.add_argument("--baseline", default="loo", help="method the others are paired with")
    parser.add_argument(
        "--summarize-only", action="store_true", help="tabulate OUT's records, run no model"
    )
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument(
        "--seed", type=int, default=0, help="base seed; each question's derives from its id"
    )
    parser.add_argument("--device", default=None, help="cpu / cuda (default: best available)")
    parser.add_argument(
        "--prompt-style",
        default="short",
        choices=["short", "plain"],
        help="the engine's prompt (worker.engine.prompts); records before it existed: plain",
    )


def _explanation_arguments(parser: argparse.ArgumentParser) -> None:
    """What every Shapley and Banzhaf method's request is given."""
    parser.add_argument("--budget", type=int, default=32, help="coalitions per explanation")
    parser.add_argument(
        "--estimator",
        default="auto",
        choices=list(ESTIMATORS),
        help="the Shapley and Banzhaf methods' estimator (the request field)",
    )


def _out_dir(args: argparse.Namespace) -> Path:
    if args.out is not None:
        return Path(args.out)
    stem = args.data.name.split(".")[0]
    return Path("eval-out") / f"{stem}-{args.model.replace('/', '_').replace(':', '_')}"


def _config(args: argparse.Namespace) -> Any:
    from worker.evaluation.config import EvalConfig

    return EvalConfig(
        model=args.model,
        budget=args.budget,
        estimator=args.estimator,
        methods=tuple(args.methods),
        masking=args.masking,
        max_new_tokens=args.max_new_tokens,
        seed=args.seed,
        heldout=args.heldout,
        extra={
            "data": args.data.name if args.data else None,
            "qrels": args.qrels.name if args.qrels else None,
            "prompt_style": args.prompt_style,
            "auto": AUTO_MEANS,
            "layered": LAYERED_DESIGN,
        },
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
    # runs recorded before the prompt style existed used the plain prompt
    previous.setdefault("extra", {}).setdefault("prompt_style", "plain")
    previous.setdefault("estimator", "auto")  # runs recorded before the option existed
    # before 2026-12-04 ``auto`` meant Owen sampling (paired KernelSHAP below two groups)
    previous["extra"].setdefault("auto", "owen")
    previous["extra"].setdefault("layered", "layers, middle")  # before the boundaries
    added = previous.pop("methods_added", [])
    new_methods = [m for m in settings["methods"] if m not in previous["methods"]]
    kept = set(previous["methods"]) <= set(settings["methods"])
    if new_methods and kept and previous | {"methods": settings["methods"]} == settings:
        done = len(ResultStore(out / "results.jsonl").done_ids())
        added = [*added, {"methods": new_methods, "after_records": done}]
        path.write_text(json.dumps({**settings, "methods_added": added}, indent=2) + "\n")
        return None
    if previous != settings:
        return f"{out} holds a run with other settings ({path}); use another --out"
    return None


def _load_engine(args: argparse.Namespace) -> Any:
    """The registry's engine with this run's prompt style; ``py:module:attr`` factories
    (duck-typed test engines, ``tests.fakes``) are loaded without torch."""
    if is_factory(args.model):
        return load_factory(args.model)
    from worker.engine.base import EngineOptions
    from worker.engine.loading.registry import load_engine

    options = EngineOptions(prompt_style=args.prompt_style)
    return load_engine(args.model, device=args.device, options=options)


def _run(args: argparse.Namespace, out: Path, config: Any) -> list[dict[str, Any]]:
    """Evaluate the questions not yet in ``out``; returns the records of this file's slice."""
    from tqdm import tqdm

    from worker.engine.errors import EngineError
    from worker.engine.heap import release_free_memory
    from worker.evaluation.data import load_examples, load_qrels
    from worker.evaluation.runner import evaluate

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
        release_free_memory()  # else a long run's resident size climbs (engine/heap)
    wanted = {e.id for e in examples}
    return [r for r in store.records() if r["id"] in wanted]


def _summarize_only(args: argparse.Namespace, out: Path) -> list[dict[str, Any]] | None:
    path = out / "results.jsonl"
    if not path.exists():
        print(f"no records to summarize: {path} does not exist", file=sys.stderr)
        return None
    return ResultStore(path).records()


def main(args: argparse.Namespace) -> int:
    """Run (unless --summarize-only), then write summary.json and summary.md; prints them."""
    from worker.evaluation.report import summarize, to_markdown

    if args.data is None and (not args.summarize_only or args.out is None):
        print("--data is required (or --summarize-only with --out)", file=sys.stderr)
        return 2
    out = _out_dir(args)
    config = _config(args)
    if args.summarize_only:
        records = _summarize_only(args, out)
        if records is None:
            return 2
        run_file = out / "run.json"
        settings = json.loads(run_file.read_text(encoding="utf-8")) if run_file.exists() else {}
    else:
        problem = _check_run_file(out, config.as_json())
        if problem is not None:
            print(problem, file=sys.stderr)
            return 2
        records = _run(args, out, config)
        settings = config.as_json()
    summary = summarize(records, baseline=args.baseline)
    summary["config"] = settings
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    model = settings.get("model", args.model)
    data = settings.get("extra", {}).get("data") or args.data.name
    title = f"{data} · {model} · budget {settings.get('budget', args.budget)}"
    markdown = to_markdown(summary, title)
    (out / "summary.md").write_text(markdown, encoding="utf-8")
    print(markdown)
    return 0
