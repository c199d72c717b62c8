"""Tiny random-weight models built from configs with fixed seeds: fast, offline test subjects.

All use the byte-level ByT5 tokenizer (no vocabulary file: pad=0, eos=1, unk=2, byte b is
b + 3). Weights are drawn with a larger spread than the training default so that greedy
answers depend on the context and top-2 logit gaps are rarely near ties.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from transformers import (
    ByT5Tokenizer,
    Gemma3ForCausalLM,
    Gemma3TextConfig,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    T5Config,
    T5ForConditionalGeneration,
)

from worker.engine.loading.models import LoadedModel, finish, pick_attention

VOCAB = 384  # 3 specials + 256 bytes + 125 sentinel ids, as ByT5
SEED = 1234
EOS_BOOST = 2.5


def _llama(attn: str) -> PreTrainedModel:
    config = LlamaConfig(  # type: ignore[call-arg]  # config kwargs are typed per model
        vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=8192,
        pad_token_id=0, bos_token_id=None, eos_token_id=1, initializer_range=0.3,
        tie_word_embeddings=False, attn_implementation=attn,
    )  # fmt: skip
    return LlamaForCausalLM(config)


def _gemma(attn: str) -> PreTrainedModel:
    config = Gemma3TextConfig(  # type: ignore[call-arg]
        vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, sliding_window=48,
        layer_types=["sliding_attention", "full_attention"], max_position_embeddings=8192,
        pad_token_id=0, bos_token_id=None, eos_token_id=1, initializer_range=0.3,
        tie_word_embeddings=False, attn_implementation=attn,
    )  # fmt: skip
    return Gemma3ForCausalLM(config)


def _t5(attn: str) -> PreTrainedModel:
    config = T5Config(  # type: ignore[call-arg]
        vocab_size=VOCAB, d_model=64, d_kv=16, d_ff=128, num_layers=2, num_heads=4,
        pad_token_id=0, eos_token_id=1, decoder_start_token_id=0, initializer_factor=1.5,
        feed_forward_proj="gated-gelu", tie_word_embeddings=False,
    )  # fmt: skip
    return T5ForConditionalGeneration(config)


BUILDERS: dict[str, Callable[[str], PreTrainedModel]] = {
    "tiny-llama": _llama,
    "tiny-gemma": _gemma,
    "tiny-t5": _t5,
}


def build_tiny(kind: str, device: torch.device) -> LoadedModel:
    """The tiny model ``kind`` ("tiny-llama", "tiny-gemma", "tiny-t5"): same weights every call."""
    torch.manual_seed(SEED)
    model = BUILDERS[kind]("sdpa")
    with torch.no_grad():  # make EOS a common greedy choice so answers of varied length occur
        head: Any = model.get_output_embeddings()  # type: ignore[no-untyped-call]
        head.weight[1] *= EOS_BOOST
    model.generation_config.pad_token_id = 0
    model.generation_config.eos_token_id = 1
    return finish(model, byte_tokenizer(), device)


def byte_tokenizer() -> Any:
    """ByT5's byte-level tokenizer, which needs no vocabulary file."""
    return ByT5Tokenizer()


__all__ = ["BUILDERS", "build_tiny", "byte_tokenizer", "pick_attention"]
