"""Cached RoPE keys moved to other positions equal the keys computed there."""

from __future__ import annotations

import pytest
import torch
from transformers import DynamicCache

from worker.engine.attention.rope_shift import layer_kinds, move_keys


def keys_at(model, ids: list[int], positions: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    cache = DynamicCache()
    with torch.inference_mode():
        model(
            torch.tensor([ids]), position_ids=torch.tensor([positions]), cache=cache, use_cache=True
        )
    return [(layer.keys, layer.values) for layer in cache.layers]


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gemma"])
def test_moving_keys_back_equals_computing_them_there(engines, name):
    """Every layer (Gemma 3's sliding and full layers turn at their own frequencies): the
    same tokens 37 positions further along have the same states, so moving their keys
    back 37 positions must give the keys computed at the start."""
    engine = engines[name]
    config = engine.model.config.get_text_config()
    ids = list(range(5, 45))
    later = keys_at(engine.model, ids, list(range(37, 37 + len(ids))))
    here = keys_at(engine.model, ids, list(range(len(ids))))
    moved = [(k.clone(), v) for k, v in later]
    move_keys(engine.base, config, moved, torch.full((1, len(ids)), 37))
    for (k, v), (want_k, want_v) in zip(moved, here, strict=True):
        assert torch.allclose(k, want_k, atol=1e-4)
        assert torch.allclose(v, want_v, atol=1e-5)
    assert not torch.allclose(later[0][0], here[0][0], atol=1e-2)  # they had moved


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gemma"])
def test_each_slot_moves_by_its_own_shift(engines, name):
    """The first layer's keys depend on position only through RoPE: keys computed at gapped
    positions, each moved back by its own gap, equal the keys of the closed-up sequence."""
    engine = engines[name]
    config = engine.model.config.get_text_config()
    ids = list(range(7, 27))
    gapped = [j + 5 * (j // 4) for j in range(len(ids))]  # a gap of 5 after every 4 slots
    shifts = torch.tensor([[p - j for j, p in enumerate(gapped)]])
    moved = [(k.clone(), v) for k, v in keys_at(engine.model, ids, gapped)]
    move_keys(engine.base, config, moved, shifts)
    closed = keys_at(engine.model, ids, list(range(len(ids))))
    assert torch.allclose(moved[0][0], closed[0][0], atol=1e-4)
    assert layer_kinds(config)[0] == (
        "sliding_attention" if name == "tiny-gemma" else "full_attention"
    )
