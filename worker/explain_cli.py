"""``textgenshap explain``: one explanation in process, printed for people or as JSON.

FILE.json is either a list of documents or an object with a ``documents`` list (other keys
ignored); a document is a string or ``{"title"?, "text"}``. With ``--json`` the output is
exactly the ``result`` object the HTTP API returns. Torch is imported only inside ``main``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from service.client.remote_cli import InputError, add_remote_arguments, build_request
from service.contract.results import ExplainResult, check_lines
from service.contract.schemas import ExplainRequest

EXIT_USAGE = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``explain`` subcommand's options."""
    parser.add_argument("--question", required=True, help="the question to answer")
    parser.add_argument("--documents", required=True, type=Path, help="FILE.json (see --help)")
    parser.add_argument("--model", default=None, help="registry name, HF id, directory or GGUF")
    parser.add_argument("--levels", default="document,sentence", help="e.g. document,sentence,word")
    parser.add_argument("--budget", type=int, default=128, help="coalitions per level")
    parser.add_argument(
        "--seed", type=int, default=None, help="coalition seed (default: from the request)"
    )
    parser.add_argument("--masking", choices=["remove", "pad"], default="remove")
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: auto)")
    parser.add_argument(
        "--fast",
        action="store_true",
        help="approximate fast mode (decoder-only models; see docs/performance.md)",
    )
    parser.add_argument(
        "--no-checks",
        dest="checks",
        action="store_false",
        help="skip the removal and keep checks of the passage ranking (up to 6 coalitions)",
    )
    parser.add_argument("--json", action="store_true", help="print the result object as JSON")
    add_remote_arguments(parser)  # --server URL, --html FILE, --api-key


def main(args: argparse.Namespace) -> int:
    """Validate, load the engine, explain, print. Exit 2 on invalid input, 1 on engine errors.

    With ``--server`` the same options go to a running service through the client instead.
    """
    if args.server:
        from service.client.remote_cli import run_remote

        return int(run_remote(args))
    try:
        request = build_request(args)  # the same request --server sends
    except InputError as error:
        print(f"textgenshap explain: invalid input: {error}", file=sys.stderr)
        return EXIT_USAGE
    from worker.engine.errors import EngineError

    try:
        result = explain(request, device=args.device)
    except EngineError as error:
        print(f"textgenshap explain: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    print(result.model_dump_json() if args.json else render(result, request))
    if args.html:
        from service.client.report import render_report

        Path(args.html).write_text(render_report(request, result), encoding="utf-8")
    return 0


def explain(request: ExplainRequest, device: str | None = None) -> ExplainResult:
    """Load the engine, open a session, and run the explanation with a progress bar."""
    from tqdm import tqdm

    from worker.engine.loading.registry import DEFAULT_MODEL, load_engine
    from worker.explain import run_explanation
    from worker.resident_engines import exact_session, open_session

    name = request.model or DEFAULT_MODEL
    engine = load_engine(name, device=device)
    session = open_session(engine, request, 0)  # 0: the model's own window is the cap
    with tqdm(file=sys.stderr, unit="coalition", leave=False) as bar:
        return run_explanation(
            request,
            session,
            model=name,
            progress=_progress(bar),
            exact_session=exact_session(engine, request),
        )


def _progress(bar: Any) -> Any:
    def update(stage: str, done: int, total: int) -> None:
        bar.set_description(stage)
        bar.total = total
        bar.n = done
        bar.refresh()

    return update


def render(result: ExplainResult, request: ExplainRequest, top: int = 3) -> str:
    """Ranked answers, then the top passages for the chosen answer with their scores."""
    lines = [f"Answer: {result.answer}", "", "Candidates:"]
    for c in result.candidates:
        lines.append(f"  {c.score:+.3f}  freq {c.frequency:.2f}  {c.text!r}")
    docs = request.document_objects()
    lines += ["", "Top passages:"]
    scores = _document_scores(result)
    for rank, i in enumerate(result.passage_ranking[:top], start=1):
        title = docs[i].title or f"document {i + 1}"
        snippet = docs[i].text[:80].replace("\n", " ")
        lines.append(f"  {rank}. [{i + 1}] {title} ({scores.get(i, 0.0):+.3f}): {snippet}")
    if result.checks:
        lines += ["", *check_lines(result.checks, first=1, stats=result.stats)]  # [i + 1]
    lines += ["", _cost_line(result)]
    return "\n".join(lines)


def _cost_line(result: ExplainResult) -> str:
    s = result.stats
    rate = s.speculative_acceptance_rate
    accepted = "n/a" if rate is None else f"{rate:.2f}"
    return (
        f"{s.coalitions} coalitions, {s.forward_passes} forward passes, "
        f"{s.tokens_computed} tokens, draft acceptance {accepted}, {s.attention_backend}"
        + (", fast mode (approximate)" if s.fast else "")
    )


def _document_scores(result: ExplainResult) -> dict[int, float]:
    if not result.levels or not result.candidates:
        return {}
    return {f.document: f.score[0] for f in result.levels[0].features}
