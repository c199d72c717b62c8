"""Dockerfile: two targets; the gateway never gets torch; the worker's pinned GPU stack
(CUDA image, torch CUDA build, flash-attn wheel) agrees with itself; both run as a
non-root user with a health check. Read as text: no Docker engine runs here."""

from __future__ import annotations

import fnmatch
import importlib.metadata as md
import re
import shlex
import tomllib
from dataclasses import dataclass, field

import pytest
from ops_assets import DOCKERFILE, ROOT
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

TORCH_STACK = {"torch", "flash-attn", "transformers", "nvidia-cudnn-cu12", "triton"}


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def _logical_lines(text: str) -> list[str]:
    """Instructions with backslash continuations joined and comments dropped."""
    lines, current = [], ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if stripped.startswith("#") or not stripped:
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1].rstrip() + " "
            continue
        lines.append(current + stripped)
        current = ""
    return lines


def parse_dockerfile(text: str) -> tuple[dict[str, str], dict[str, Stage]]:
    """Global ARG defaults and the stages by name."""
    args: dict[str, str] = {}
    stages: dict[str, Stage] = {}
    stage: Stage | None = None
    for line in _logical_lines(text):
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            base, _, name = rest.partition(" AS ")
            stage = stages.setdefault(name.strip(), Stage(name.strip(), base.strip()))
        elif stage is None and keyword == "ARG":
            key, _, value = rest.partition("=")
            args[key] = value
        elif stage is not None:
            stage.instructions.append((keyword, rest))
    return args, stages


@pytest.fixture(scope="module")
def dockerfile() -> tuple[dict[str, str], dict[str, Stage]]:
    return parse_dockerfile(DOCKERFILE.read_text())


def _commands(run: str) -> list[list[str]]:
    """A RUN line's simple commands: shell words split at ``&&``, ``;`` and ``then``."""
    lexer = shlex.shlex(run, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    commands: list[list[str]] = [[]]
    for token in lexer:
        if token in {"&&", ";", "then", "||"}:
            commands.append([])
        else:
            commands[-1].append(token)
    return [c for c in commands if c]


def _pip_installs(stage: Stage) -> list[list[str]]:
    """The argument lists of every `pip install` in the stage's RUN commands."""
    found = []
    for run in stage.all("RUN"):
        found.extend(c[2:] for c in _commands(run) if c[:2] == ["pip", "install"])
    return found


def test_parse_dockerfile_reads_args_stages_and_continuations() -> None:
    text = (
        'ARG A=1\n# c\nFROM img:1 AS one\nRUN pip install x \\\n    && echo "y"\nFROM one AS two\n'
    )
    args, stages = parse_dockerfile(text)
    assert args == {"A": "1"}
    assert list(stages) == ["one", "two"]
    assert stages["one"].all("RUN") == ['pip install x && echo "y"']
    assert _pip_installs(stages["one"]) == [["x"]]


def test_dockerfile_has_gateway_and_worker_targets(dockerfile) -> None:
    _, stages = dockerfile
    assert list(stages) == ["gateway", "worker"]
    assert stages["gateway"].base == "python:${PYTHON_VERSION}-slim"
    assert stages["worker"].base == "${CUDA_IMAGE}"


def test_gateway_installs_the_project_without_extras(dockerfile) -> None:
    _, stages = dockerfile
    installs = _pip_installs(stages["gateway"])
    assert installs == [["--no-compile", "."]]
    text = " ".join(args for _, args in stages["gateway"].instructions)
    assert "index-url" not in text
    assert "FLASH_ATTN" not in text


def _closure(requirements: list[str]) -> set[str]:
    """Installed distributions reachable from ``requirements`` (no extras taken)."""
    seen: set[str] = set()
    todo = [Requirement(r) for r in requirements]
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        if name in seen or (req.marker and not req.marker.evaluate({"extra": ""})):
            continue
        seen.add(name)
        try:
            todo.extend(Requirement(r) for r in md.requires(name) or [])
        except md.PackageNotFoundError:
            continue
    return seen


def test_core_dependencies_never_pull_torch() -> None:
    core = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    closure = _closure(core)
    assert {"fastapi", "redis", "prometheus-client", "uvicorn"} <= closure
    assert closure.isdisjoint(TORCH_STACK), closure & TORCH_STACK


def test_worker_pins_a_consistent_cuda_torch_flash_attn_stack(dockerfile) -> None:
    args, _ = dockerfile
    cuda = re.fullmatch(
        r"nvidia/cuda:(\d+)\.(\d+)\.\d+-cudnn-runtime-ubuntu22\.04", args["CUDA_IMAGE"]
    )
    assert cuda is not None, args["CUDA_IMAGE"]
    assert args["TORCH_INDEX_URL"] == f"https://download.pytorch.org/whl/cu{cuda[1]}{cuda[2]}"
    torch_minor = ".".join(args["TORCH_VERSION"].split(".")[:2])
    python_tag = "cp" + args["PYTHON_VERSION"].replace(".", "")
    wheel = args["FLASH_ATTN_WHEEL"].rsplit("/", 1)[1]
    # torch >= 2.7 wheels on the PyTorch index are built with the C++11 ABI.
    expected = (
        f"+cu{cuda[1]}torch{torch_minor}cxx11abiTRUE-{python_tag}-{python_tag}-linux_x86_64.whl"
    )
    assert wheel.startswith("flash_attn-2."), wheel
    assert wheel.endswith(expected), wheel


def test_worker_installs_torch_from_the_cuda_index_then_the_gpu_extras(dockerfile) -> None:
    _, stages = dockerfile
    installs = _pip_installs(stages["worker"])
    assert ["torch==${TORCH_VERSION}", "--index-url", "${TORCH_INDEX_URL}"] in installs
    assert ["--constraint", "/opt/constraints.txt", "${FLASH_ATTN_WHEEL}"] in installs
    assert ["--no-compile", "--constraint", "/opt/constraints.txt", ".[${extras}]"] in installs
    assert 'extras="worker,gpu"' in " ".join(stages["worker"].all("RUN"))


@pytest.mark.parametrize("target", ["gateway", "worker"])
def test_targets_run_as_non_root_with_a_healthcheck(dockerfile, target: str) -> None:
    _, stages = dockerfile
    stage = stages[target]
    assert stage.all("USER") == ["textgenshap"]
    assert any("--uid 10001" in run for run in stage.all("RUN"))
    (health,) = stage.all("HEALTHCHECK")
    port = stage.all("EXPOSE")[0]
    assert f"http://127.0.0.1:{port}/" in health
    # The last instruction that sets the user comes before the command that runs.
    keywords = [kw for kw, _ in stage.instructions]
    assert keywords.index("USER") < keywords.index("CMD")


def test_worker_keeps_the_model_cache_on_a_volume(dockerfile) -> None:
    _, stages = dockerfile
    worker = stages["worker"]
    assert worker.all("VOLUME") == ['["/models"]']
    env = " ".join(worker.all("ENV"))
    assert "TEXTGENSHAP_MODEL_CACHE_DIR=/models" in env
    assert "HF_HOME=/models/huggingface" in env


def _dockerignore() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_copied_sources_exist_and_are_in_the_build_context(dockerfile) -> None:
    _, stages = dockerfile
    ignored = _dockerignore()
    for stage in stages.values():
        for copy in stage.all("COPY"):
            *sources, _dest = copy.split()
            for source in sources:
                assert (ROOT / source).exists(), f"{stage.name}: COPY {source} is missing"
                hits = [p for p in ignored if fnmatch.fnmatch(source, p.lstrip("*/"))]
                assert not hits, f"{stage.name}: COPY {source} is excluded by {hits}"


def test_dockerignore_keeps_local_state_out_of_the_context() -> None:
    ignored = set(_dockerignore())
    assert {".git", ".venv", ".env", "tests", "**/__pycache__"} <= ignored
