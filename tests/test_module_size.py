"""Size limits on the gateway and the worker, so that a module stays one concept and a
function fits on a screen: no module over ``MAX_MODULE_LINES`` lines, no function (``def``
or ``async def``, nested ones and methods included) over ``MAX_FUNCTION_LINES``, counted
from its ``def`` line to the last line of its body (docstring included, decorators not).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("service", "worker")
MAX_MODULE_LINES = 300
MAX_FUNCTION_LINES = 40


def checked_modules() -> list[Path]:
    return sorted(path for folder in FOLDERS for path in (ROOT / folder).rglob("*.py"))


def long_functions(path: Path) -> list[str]:
    """``name (line): length`` of every function in ``path`` over the limit."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            if length > MAX_FUNCTION_LINES:
                found.append(f"{node.name} (line {node.lineno}): {length} lines")
    return found


def test_the_limits_see_real_code() -> None:
    """Guard against a check that passes because it reads nothing."""
    names = {p.relative_to(ROOT).as_posix() for p in checked_modules()}
    assert {"worker/loop.py", "service/app.py", "worker/engine/causal/session.py"} <= names


@pytest.mark.parametrize("path", checked_modules(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_module_size(path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_MODULE_LINES, f"{lines} lines (at most {MAX_MODULE_LINES})"


@pytest.mark.parametrize("path", checked_modules(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_function_size(path: Path) -> None:
    assert long_functions(path) == [], f"over {MAX_FUNCTION_LINES} lines"
