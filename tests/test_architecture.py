"""The import rules of docs/architecture.md, checked on every module's import statements
(function-level imports included: a lazy import is still a dependency).

- torch, transformers and flash-attn only inside ``worker/engine/``: the gateway image has
  no torch, and the Shapley core and the harness reach the model only through the engine;
- ``worker/shapley/`` is pure: NumPy, pysbd and the standard library, no I/O libraries,
  nothing from the engine, the service or the harness;
- ``service/contract/`` is a leaf: pydantic, pydantic-settings and the standard library;
- in ``service/``, only ``service/embedded.py`` imports the worker runtime; the rest may
  use the pure ``worker.shapley`` (the gateway's submit-time unit bound segments the
  documents exactly as the worker will);
- only the queue adapters (``service/queues/``) speak Redis;
- the caller's side (``service/client/``) needs the contract and httpx, not the gateway.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODEL_LIBRARIES = {"torch", "transformers", "flash_attn", "gguf", "safetensors"}
IO_LIBRARIES = {"redis", "fastapi", "starlette", "uvicorn", "httpx", "requests", "socket", "urllib"}
STDLIB = set(sys.stdlib_module_names)


def imports(path: Path) -> set[str]:
    """Every module an ``import`` or ``from ... import`` in the file names (absolute)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def modules(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def top(name: str) -> str:
    return name.split(".")[0]


def under(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def test_the_rules_see_real_imports() -> None:
    """Guard against a checker that passes because it reads nothing."""
    assert "torch" in imports(ROOT / "worker/engine/causal/engine.py")
    assert "worker.shapley.unit_bounds" in imports(ROOT / "service/limits.py")
    assert "worker.loop" in imports(ROOT / "service/embedded.py")  # a lazy import


@pytest.mark.parametrize("path", modules("service") + modules("worker"), ids=str)
def test_model_libraries_stay_inside_the_engine(path: Path) -> None:
    if path.is_relative_to(ROOT / "worker" / "engine"):
        return
    assert not {top(n) for n in imports(path)} & MODEL_LIBRARIES


@pytest.mark.parametrize("path", modules("worker/shapley"), ids=str)
def test_the_shapley_core_is_pure(path: Path) -> None:
    for name in imports(path):
        first = top(name)
        assert first in STDLIB | {"numpy", "pysbd", "worker", "__future__"}, name
        assert first not in IO_LIBRARIES, name
        if first == "worker":
            assert under(name, "worker.shapley"), name


@pytest.mark.parametrize("path", modules("service/contract"), ids=str)
def test_the_contract_is_a_leaf(path: Path) -> None:
    for name in imports(path):
        first = top(name)
        allowed = first in STDLIB | {"pydantic", "pydantic_settings", "__future__"}
        assert allowed or under(name, "service.contract"), name


@pytest.mark.parametrize("path", modules("service"), ids=str)
def test_only_the_embedded_composition_imports_the_worker_runtime(path: Path) -> None:
    if path == ROOT / "service" / "embedded.py":
        return
    for name in imports(path):
        if top(name) == "worker":
            assert under(name, "worker.shapley"), f"{path.name} imports {name}"


@pytest.mark.parametrize("path", modules("service") + modules("worker"), ids=str)
def test_only_the_queue_adapters_speak_redis(path: Path) -> None:
    if path.is_relative_to(ROOT / "service" / "queues"):
        return
    assert "redis" not in {top(n) for n in imports(path)}


@pytest.mark.parametrize("path", modules("service/client"), ids=str)
def test_the_client_side_needs_no_gateway(path: Path) -> None:
    for name in imports(path):
        if top(name) == "service":
            assert under(name, "service.contract") or under(name, "service.client"), name
        assert top(name) not in {"fastapi", "starlette", "uvicorn", "redis", "worker"}, name


ENGINE = ROOT / "worker" / "engine"
FAMILIES = ("worker.engine.causal", "worker.engine.seq2seq")


@pytest.mark.parametrize(
    "path",
    modules("worker/engine/attention")
    + modules("worker/engine/batching")
    + modules("worker/engine/speculation"),
    ids=str,
)
def test_the_engine_families_sit_on_top(path: Path) -> None:
    for name in imports(path):
        assert not any(under(name, family) for family in FAMILIES), name
        assert not under(name, "worker.engine.loading.registry"), name


@pytest.mark.parametrize("path", modules("worker/engine"), ids=str)
def test_only_the_registry_builds_engines_of_both_families(path: Path) -> None:
    """A family's modules never reach into the other family; outside the families only the
    registry (names and factories to engines) imports them."""
    names = imports(path)
    for family in FAMILIES:
        package = ENGINE / family.rsplit(".", 1)[1]
        if path.is_relative_to(package) or path == ENGINE / "loading" / "registry.py":
            continue
        assert not any(under(name, family) for name in names), f"{path.name} imports {family}"


@pytest.mark.parametrize("path", modules("worker/engine/speculation"), ids=str)
def test_speculation_is_plain_data(path: Path) -> None:
    assert not {top(n) for n in imports(path)} & MODEL_LIBRARIES
