"""Load a model and its tokenizer once per process: device, dtype, attention backend, GGUF cache.

GGUF files take 20-60 s to dequantise on a CPU, so the float weights are cached as
safetensors (plus config and tokenizer) under the model cache directory; the next load
reads that directory in seconds. Cache writes go to a temporary directory renamed into
place, so concurrent workers never see a half-written cache. Nothing here touches the
network.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors.torch import save_file
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    PreTrainedModel,
)

from worker.engine.attention.flash import pick_kernel
from worker.engine.errors import ModelNotFound

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

Family = Literal["causal", "seq2seq"]


@dataclass
class LoadedModel:
    """A resident model with what the engine needs to know about how it runs."""

    model: PreTrainedModel
    tokenizer: Any
    family: Family
    device: torch.device
    attention_backend: str


def default_cache_dir() -> Path:
    """``$TEXTGENSHAP_MODEL_CACHE_DIR`` or ``~/.cache/textgenshap``."""
    env = os.environ.get("TEXTGENSHAP_MODEL_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "textgenshap"


def pick_device(device: str | None = None) -> torch.device:
    """The requested device, else CUDA when present, else CPU."""
    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def pick_dtype(device: torch.device) -> torch.dtype:
    """bf16 on CUDA (halves memory, tensor cores), fp32 on CPU (bf16 matmuls are slow there)."""
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def pick_attention(device: torch.device) -> str:
    """FlashAttention 2 where its kernel runs (``attention.flash.pick_kernel``: an Ampere or
    newer GPU and flash-attn importable), SDPA otherwise."""
    return pick_kernel(device)[0]


def family_of(config: Any) -> Family:
    """Encoder-decoder models (T5, FiD checkpoints) are ``seq2seq``; everything else ``causal``."""
    return "seq2seq" if getattr(config, "is_encoder_decoder", False) else "causal"


def model_class(family: Family) -> Any:
    return AutoModelForSeq2SeqLM if family == "seq2seq" else AutoModelForCausalLM


def finish(model: PreTrainedModel, tokenizer: Any, device: torch.device) -> LoadedModel:
    """Move to the device in eval mode and record the attention backend actually set."""
    model = model.to(device).eval()  # type: ignore[arg-type]  # transformers types .to oddly
    model.requires_grad_(False)
    backend = str(getattr(model.config, "_attn_implementation", None) or "eager")
    return LoadedModel(model, tokenizer, family_of(model.config), device, backend)


def load_pretrained(source: str, device: torch.device, **kwargs: Any) -> LoadedModel:
    """A Hugging Face id or local directory (``local_files_only``: the hub is never asked)."""
    config = AutoConfig.from_pretrained(source, local_files_only=True, **kwargs)
    family = family_of(config)
    tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True, **kwargs)
    model = _from_pretrained(model_class(family), source, device, **kwargs)
    return finish(model, tokenizer, device)


def _from_pretrained(cls: Any, source: str, device: torch.device, **kwargs: Any) -> Any:
    wanted = pick_attention(device)
    common = {"dtype": pick_dtype(device), "local_files_only": True, **kwargs}
    try:
        return cls.from_pretrained(source, attn_implementation=wanted, **common)
    except (ValueError, ImportError):  # the architecture lacks that backend (T5: eager only)
        return cls.from_pretrained(source, **common)


def load_gguf(path: Path, device: torch.device, cache_dir: Path | None = None) -> LoadedModel:
    """A GGUF file, dequantised once into the cache directory and read from there afterwards."""
    if not path.is_file():
        raise ModelNotFound(f"GGUF file not found: {path}")
    target = (cache_dir or default_cache_dir()) / "dequantised" / _cache_key(path)
    if not (target / "config.json").is_file():
        _dequantise_into(path, target)
    return load_pretrained(str(target), device)


def _cache_key(path: Path) -> str:
    # name and size, not the path: the same file assembled elsewhere shares the cache
    digest = hashlib.sha256(f"{path.name}:{path.stat().st_size}".encode()).hexdigest()[:12]
    return f"{path.stem}-{digest}"


def _dequantise_into(path: Path, target: Path) -> None:
    """Load the GGUF with transformers and write float weights, config and tokenizer.

    ``save_pretrained`` refuses GGUF-loaded models, so the state dict is written directly,
    without the tied output projection (``from_pretrained`` re-ties it from the config).
    """
    directory, name = str(path.parent), path.name
    tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=name)
    config = AutoConfig.from_pretrained(directory, gguf_file=name)
    model = model_class(family_of(config)).from_pretrained(
        directory, gguf_file=name, dtype=torch.float32
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        save_file(_untied_state_dict(model), str(tmp / "model.safetensors"))
        model.config.save_pretrained(tmp)
        model.generation_config.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        tmp.chmod(0o755)  # mkdtemp makes it private; workers may run as other users
        _publish(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _untied_state_dict(model: PreTrainedModel) -> dict[str, torch.Tensor]:
    seen: set[int] = set()
    out: dict[str, torch.Tensor] = {}
    for key, tensor in model.state_dict().items():
        if tensor.data_ptr() in seen:
            continue  # a tied copy (lm_head == embed_tokens)
        seen.add(tensor.data_ptr())
        out[key] = tensor.detach().contiguous().clone()
    return out


def _publish(tmp: Path, target: Path) -> None:
    """Rename into place; if another process won the race, keep its copy."""
    try:
        tmp.rename(target)
    except OSError:
        if not (target / "config.json").is_file():
            raise
