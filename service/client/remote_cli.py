"""``textgenshap explain ... --server URL``: the same explanation, computed by a remote service.

``run_remote(args)`` reads the question and documents like the in-process command,
submits them with ``service.client.api``, shows a progress bar on stderr, prints the result
(``--json`` for the exact API object) and writes ``--html FILE`` as a report.
Exit codes: 0 done, 1 the service or the job failed, 2 bad input.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, TextIO

import httpx
from pydantic import ValidationError
from tqdm import tqdm

from service.client.api import Client
from service.client.errors import ClientError, describe_detail
from service.client.report import default_answer, plus_minus, render_report
from service.contract.results import ExplainResult, check_lines
from service.contract.schemas import ExplainRequest, JobView

TIMEOUT_SECONDS = 3600.0
SHOWN_CANDIDATES = 10  # small models can give dozens of one-off answers


class InputError(ValueError):
    """The command line or the documents file cannot make a valid request."""


def add_remote_arguments(parser: argparse.ArgumentParser) -> None:
    """``--server``, ``--html`` and ``--api-key`` for ``textgenshap explain``; the other
    options (question, documents, model, levels, ...) are the in-process command's."""
    parser.add_argument(
        "--server", default=None, metavar="URL", help="explain on a running service"
    )
    parser.add_argument(
        "--html", default=None, metavar="FILE", help="also write a self-contained HTML report"
    )
    parser.add_argument(
        "--api-key", default=None, help="API key for --server (default: $TEXTGENSHAP_API_KEY)"
    )


def load_documents(path: str) -> tuple[list[Any], str | None]:
    """Documents (and a question, if the file has one) from FILE.json: a list, or an
    object with ``documents``. Records keep only ``title`` and ``text``, so dataset lines
    (NQ's ``is_gold``, say) can be passed as they are."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read documents from {path}: {exc}") from exc
    documents = data.get("documents") if isinstance(data, dict) else data
    if not isinstance(documents, list):
        raise InputError(f"{path}: expected a list of documents or an object with 'documents'")
    question = data.get("question") if isinstance(data, dict) else None
    return [_passage(item) for item in documents], question


def _passage(item: Any) -> Any:
    if isinstance(item, dict):
        return {key: item[key] for key in ("title", "text") if key in item}
    return item


def build_request(args: argparse.Namespace) -> ExplainRequest:
    """An ``ExplainRequest`` from the parsed command line; ``InputError`` names the field."""
    documents, file_question = load_documents(args.documents)
    fields: dict[str, Any] = {
        "question": args.question or file_question,
        "documents": documents,
        "model": args.model,
        "levels": [level.strip() for level in str(args.levels).split(",") if level.strip()],
        "budget": args.budget,
        "seed": args.seed,
        "masking": args.masking,
        "max_new_tokens": args.max_new_tokens,
        "fast": args.fast,
        "checks": args.checks,
    }
    fields = {name: value for name, value in fields.items() if value is not None}
    try:
        return ExplainRequest.model_validate(fields)
    except ValidationError as exc:
        raise InputError(describe_detail(exc.errors(include_url=False))) from exc


class ProgressBar:
    """A tqdm bar on stderr that follows the job's stage and coalition count."""

    def __init__(self, stream: TextIO) -> None:
        self._bar = tqdm(total=0, file=stream, unit="coalition", dynamic_ncols=True)

    def __call__(self, job: JobView) -> None:
        progress = job.progress
        self._bar.set_description(f"{job.status.value}: {progress.stage}", refresh=False)
        self._bar.total = progress.total or None  # 0 means "not known yet"
        self._bar.n = progress.done
        self._bar.refresh()

    def close(self) -> None:
        self._bar.close()


def format_text(result: ExplainResult) -> str:
    """A short human summary: answer, candidates, passage ranking, top features per level."""
    lines = [f"answer: {result.answer}", "candidates:"]
    for c in result.candidates[:SHOWN_CANDIDATES]:
        lines.append(f"  {c.score:+.3f}  {c.frequency:5.1%}  {c.text}")
    if len(result.candidates) > SHOWN_CANDIDATES:
        lines.append(f"  ... and {len(result.candidates) - SHOWN_CANDIDATES} more (see --json)")
    lines.append("passage ranking: " + ", ".join(str(i) for i in result.passage_ranking))
    lines += check_lines(result.checks, stats=result.stats)
    if not result.candidates:
        return "\n".join(lines)
    a = default_answer(result)
    for level in result.levels:
        top = sorted(level.features, key=lambda f: -f.score[a])[:5]
        lines.append(f"{level.level} ({level.coalitions} coalitions, {level.estimator}):")
        for f in top:
            snippet = " ".join(f.text.split())[:70]
            lines.append(
                f"  {f.score[a]:+.3f}{plus_minus(f.stderr[a])}  doc {f.document}  {snippet}"
            )
    return "\n".join(lines)


def _explain(args: argparse.Namespace, request: ExplainRequest) -> ExplainResult:
    api_key = args.api_key or os.environ.get("TEXTGENSHAP_API_KEY") or None
    bar = ProgressBar(sys.stderr)
    try:
        with Client(args.server, api_key) as client:
            return client.explain(request, timeout=TIMEOUT_SECONDS, on_progress=bar)
    finally:
        bar.close()


def run_remote(args: argparse.Namespace) -> int:
    """Explain on ``args.server``; print the result; write ``args.html`` if given."""
    try:
        request = build_request(args)
    except InputError as exc:
        print(f"textgenshap: error: {exc}", file=sys.stderr)
        return 2
    try:
        result = _explain(args, request)
    except ClientError as exc:
        print(f"textgenshap: error: {exc}", file=sys.stderr)
        return 1
    except httpx.HTTPError as exc:
        print(f"textgenshap: error: cannot reach {args.server}: {exc}", file=sys.stderr)
        return 1
    print(result.model_dump_json(indent=2) if args.json else format_text(result))
    if args.html:
        Path(args.html).write_text(render_report(request, result), encoding="utf-8")
        print(f"report written to {args.html}", file=sys.stderr)
    return 0
