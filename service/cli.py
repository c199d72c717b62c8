"""The ``textgenshap`` command. Each subcommand lives in its own module, imported lazily
so that ``textgenshap serve`` never imports torch."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# subcommand -> (module with add_arguments(parser) and main(args) -> int, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("service.server", "run the HTTP gateway (embedded worker when no --redis)"),
    "worker": ("worker.loop", "run a worker that takes jobs from Redis"),
    "explain": ("worker.explain_cli", "explain one question in process and print the result"),
    "eval": ("worker.evaluation.cli", "evaluate on NaturalQuestions / MIRACL files"),
}


def build_parser(only: str) -> argparse.ArgumentParser:
    """A parser whose subcommand ``only`` is fully defined; others are names only, so their
    modules (and torch) stay unimported."""
    parser = argparse.ArgumentParser(
        prog="textgenshap",
        description="Explain long-context LLM answers with hierarchical Shapley values.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        if name != only:
            sub.add_parser(name, help=help_text)
            continue
        sub_parser = sub.add_parser(name, help=help_text, description=help_text)
        module = importlib.import_module(module_name)
        module.add_arguments(sub_parser)
        sub_parser.set_defaults(_module=module)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    only = command if command in SUBCOMMANDS else None
    if only is None:  # no valid subcommand: let argparse print usage and exit 2
        build_parser("").parse_args(argv)
    args = build_parser(only).parse_args(argv)
    return int(args._module.main(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
