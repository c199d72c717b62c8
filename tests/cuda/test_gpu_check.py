"""``make gpu-check`` off a GPU (CPU tests, not ``cuda``-marked): without CUDA it says so
in one line and exits 0 at once, installing nothing; the Dockerfile's pins are what it
installs; and, with every GPU step faked, it orders its steps and prints one table from
``bench/engine.py``'s JSON rows."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from bench import gpu_check

SCRIPT = Path(gpu_check.__file__)
ROWS = [
    {"model": "gemma-3-270m", "mode": "naive generate loop", "seconds": 25.6, "passes": 896,
     "tokens": 512000, "coalitions": 128, "agreement": 1.0, "backend": "sdpa"},
    {"model": "gemma-3-270m", "mode": "linear layout (FA2's)", "seconds": 3.2, "passes": 300,
     "tokens": 64000, "coalitions": 128, "agreement": 0.984375, "backend": "flash_attention_2"},
]  # fmt: skip


def check(env_path: str, venv: Path) -> subprocess.CompletedProcess[str]:
    """The script as ``make gpu-check`` runs it, with only ``env_path`` on PATH."""
    command = [sys.executable, str(SCRIPT), "--venv", str(venv)]
    return subprocess.run(command, env={"PATH": env_path}, capture_output=True, text=True)


def test_without_nvidia_smi_it_says_so_and_exits_0(tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()
    start = time.monotonic()
    done = check(str(empty), tmp_path / "venv")
    assert time.monotonic() - start < 10  # nothing installed, nothing imported but stdlib
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"{gpu_check.NO_CUDA} (nvidia-smi not found)"]
    assert not (tmp_path / "venv").exists()


def test_an_nvidia_smi_without_a_gpu_is_no_cuda_either(tmp_path):
    """A driver that is not loaded: nvidia-smi exists but fails; still nothing to run."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    smi.write_text(
        "#!/bin/sh\necho \"NVIDIA-SMI has failed because it couldn't communicate with the "
        'NVIDIA driver."\nexit 9\n'
    )
    smi.chmod(0o755)
    done = check(str(bin_dir), tmp_path / "venv")
    assert done.returncode == 0, done.stderr
    [line] = done.stdout.splitlines()
    assert line.startswith(gpu_check.NO_CUDA)
    assert "couldn't communicate" in line
    assert not (tmp_path / "venv").exists()


def test_the_pins_are_the_dockerfiles():
    pins = gpu_check.read_pins(gpu_check.ROOT / "Dockerfile")
    minor = ".".join(pins.torch.split(".")[:2])
    assert pins.torch_index.startswith("https://download.pytorch.org/whl/cu")
    assert f"torch{minor}" in pins.flash_attn_wheel  # the wheel is built for that torch
    assert f"cp{pins.python.replace('.', '')}" in pins.flash_attn_wheel


def test_torch_is_installed_first_and_then_held_to_its_pin(tmp_path):
    pins = gpu_check.read_pins(gpu_check.ROOT / "Dockerfile")
    python, constraints = tmp_path / "python", tmp_path / "constraints.txt"
    commands = gpu_check.install_commands(python, constraints, pins)
    assert all(c[:4] == [str(python), "-m", "pip", "install"] for c in commands)
    torch = next(i for i, c in enumerate(commands) if f"torch=={pins.torch}" in c)
    assert commands[torch][-2:] == ["--index-url", pins.torch_index]
    wheel, project = commands[torch + 1], commands[torch + 2]
    for later in (wheel, project):
        assert later[later.index("--constraint") + 1] == str(constraints)
    assert wheel[-1] == pins.flash_attn_wheel
    assert project[-2:] == ["-e", f"{gpu_check.ROOT}[worker,dev,eval,gpu]"]
    without = replace(pins, flash_attn_wheel="")
    commands = gpu_check.install_commands(python, constraints, without)
    assert f"{gpu_check.ROOT}[worker,dev,eval]" in commands[-2]  # gpu would build from source
    assert not any(c[-1].endswith(".whl") for c in commands)


def test_the_table_from_bench_rows():
    lines = gpu_check.format_table(ROWS).splitlines()
    assert [c.strip() for c in lines[0].strip("|").split("|")] == list(gpu_check.COLUMNS)
    assert set(lines[1]) == {"|", "-"}
    assert len({len(line) for line in lines}) == 1  # aligned
    cells = [c.strip() for c in lines[3].strip("|").split("|")]
    # 300 passes / 128 coalitions, 3.2 s / 128, 64000 tokens / 3.2 s
    assert cells == ["gemma-3-270m", "linear layout (FA2's)", "flash_attention_2", "2.34",
                     "0.0250", "20000", "0.98"]  # fmt: skip


@pytest.fixture
def faked(monkeypatch, tmp_path):
    """A GPU machine in every respect the script checks, with the steps recorded."""
    steps: list[str] = []
    monkeypatch.setattr(gpu_check, "find_gpus", lambda: (["GPU 0: NVIDIA A10G"], ""))
    monkeypatch.setattr(gpu_check, "data_problem", lambda: None)
    pins = gpu_check.read_pins(gpu_check.ROOT / "Dockerfile")
    monkeypatch.setattr(gpu_check, "python_version", lambda: pins.python)

    def install(venv, pins):
        steps.append(f"install torch=={pins.torch}")
        return venv / "bin" / "python"

    def bench(python, out, log):
        steps.append("bench")
        out.write_text(json.dumps({"settings": {}, "rows": ROWS}))
        return 0

    monkeypatch.setattr(gpu_check, "install", install)
    monkeypatch.setattr(gpu_check, "torch_sees_cuda", lambda python: True)
    monkeypatch.setattr(gpu_check, "run_tests", lambda python: steps.append("tests") or 0)
    monkeypatch.setattr(gpu_check, "run_bench", bench)
    (tmp_path / "venv").mkdir()
    return steps, ["--venv", str(tmp_path / "venv")]


def test_on_a_gpu_it_installs_tests_benches_and_prints_the_table(faked, capsys):
    steps, argv = faked
    assert gpu_check.main(argv) == 0
    torch_pin = gpu_check.read_pins(gpu_check.ROOT / "Dockerfile").torch
    assert steps == [f"install torch=={torch_pin}", "tests", "bench"]
    out = capsys.readouterr().out
    assert gpu_check.format_table(ROWS) in out
    assert out.rstrip().endswith("# tests: passed; bench: ok")


def test_a_gpu_torch_cannot_use_is_an_error(faked, monkeypatch, capsys):
    steps, argv = faked
    monkeypatch.setattr(gpu_check, "torch_sees_cuda", lambda python: False)
    assert gpu_check.main(argv) == 1
    assert steps == [steps[0]]  # installed, then stopped: no tests, no bench
    assert "cannot use it" in capsys.readouterr().out


def test_failed_tests_fail_the_check_but_the_bench_still_runs(faked, monkeypatch, capsys):
    steps, argv = faked
    monkeypatch.setattr(gpu_check, "run_tests", lambda python: steps.append("tests") or 1)
    assert gpu_check.main(argv) == 1
    assert steps[1:] == ["tests", "bench"]
    assert "tests: FAILED (pytest exit 1)" in capsys.readouterr().out
