"""Model names, factories, devices and the GGUF cache's atomic publication."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from worker.engine.errors import ContextTooLong, EngineError, ModelNotFound
from worker.engine.loading import models as loading
from worker.engine.loading.registry import DEFAULT_MODEL, KNOWN_MODELS, load_engine
from worker.shapley import segment
from worker.shapley.units import Document


def test_known_models_name_the_registry():
    assert DEFAULT_MODEL == "gemma-3-270m"
    assert set(KNOWN_MODELS) == {
        "gemma-3-270m", "smollm2-135m", "tiny-llama", "tiny-gemma", "tiny-t5", "tiny-t5-fid",
    }  # fmt: skip


def test_engines_report_family_device_and_backend(engines):
    got = {n: (e.family, e.device, e.attention_backend) for n, e in engines.items()}
    assert got == {
        "tiny-llama": ("causal", "cpu", "sdpa"),
        "tiny-gemma": ("causal", "cpu", "sdpa"),
        "tiny-t5": ("seq2seq", "cpu", "sdpa"),
        "tiny-t5-fid": ("seq2seq", "cpu", "sdpa"),
    }
    assert engines["tiny-t5-fid"].fid
    assert not engines["tiny-t5"].fid


def test_cpu_runs_fp32_on_sdpa():
    cpu = torch.device("cpu")
    assert (loading.pick_dtype(cpu), loading.pick_attention(cpu)) == (torch.float32, "sdpa")


def test_unknown_names_raise_model_not_found(tmp_path):
    with pytest.raises(ModelNotFound, match="unknown model 'no-such-model'"):
        load_engine("no-such-model", cache_dir=tmp_path)
    with pytest.raises(ModelNotFound, match="GGUF file not found"):
        load_engine(str(tmp_path / "missing.gguf"), cache_dir=tmp_path)
    with pytest.raises(ModelNotFound, match="factory"):
        load_engine("py:no_such_module:make")


def test_fid_mode_needs_an_encoder_decoder():
    with pytest.raises(EngineError, match="FiD mode needs an encoder-decoder"):
        load_engine("fid:tiny-llama")


def test_py_factory_returns_its_engine(engines):
    engine = load_engine("py:tests.fakes:make_fake_engine")
    assert hasattr(engine, "open_session")


def test_count_tokens_and_context_limit(engines):
    engine = engines["tiny-llama"]
    docs = [Document("abc", "T")]
    tokens = engine.count_tokens("Q?", docs)
    assert tokens == len(engine.open_session("Q?", docs).full)
    too_long = [Document("x" * engine.max_context_tokens, "T")]
    with pytest.raises(ContextTooLong, match="at most 8192"):
        engine.open_session("Q?", too_long)


def test_publish_keeps_the_winner_of_a_race(tmp_path):
    winner, loser, target = tmp_path / "a", tmp_path / "b", tmp_path / "model"
    for directory, text in ((winner, "winner"), (loser, "loser")):
        directory.mkdir()
        (directory / "config.json").write_text(text)
    loading._publish(winner, target)
    loading._publish(loser, target)  # target exists: the rename fails, the cache stays whole
    assert (target / "config.json").read_text() == "winner"


def test_a_local_model_directory_loads(tmp_path, engines):
    """What ``save_pretrained`` writes (or a dequantised GGUF cache holds) loads by path."""
    from worker.engine.loading.tiny import build_tiny

    tiny = build_tiny("tiny-llama", torch.device("cpu"))
    tiny.model.save_pretrained(tmp_path)
    tiny.tokenizer.save_pretrained(tmp_path)
    engine = load_engine(str(tmp_path), device="cpu")
    assert (engine.name, engine.family, engine.attention_backend) == (
        str(tmp_path),
        "causal",
        "sdpa",
    )
    docs = [Document("Ada wrote it.", "T")]
    assert engine.count_tokens("Who?", docs) == len(engine.open_session("Who?", docs).full)
    units = segment.document_units(docs)
    keep = np.ones((1, 1), dtype=bool)
    reloaded = engine.open_session("Who?", docs).answer_tokens(units, keep)
    assert reloaded == engines["tiny-llama"].open_session("Who?", docs).answer_tokens(units, keep)
