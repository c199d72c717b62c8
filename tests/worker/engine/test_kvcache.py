"""The batch cache: in-place growth and dropping finished rows."""

from __future__ import annotations

import torch

from worker.engine.batching.kvcache import GrowingCache


def test_updates_append_in_place_and_grow_when_full():
    start = torch.arange(2 * 1 * 3 * 2, dtype=torch.float32).view(2, 1, 3, 2)
    cache = GrowingCache([(start, start + 1)], room=2)
    layer = cache.layers[0]
    buffer = layer._keys
    new = torch.full((2, 1, 2, 2), 7.0)
    keys, values = cache.update(new, new + 1, 0)
    assert keys.shape == (2, 1, 5, 2)
    assert layer._keys is buffer
    assert torch.equal(keys[:, :, :3], start)
    assert torch.equal(values[:, :, 3:], new + 1)
    keys, _ = cache.update(torch.zeros(2, 1, 40, 2), torch.zeros(2, 1, 40, 2), 0)
    assert keys.shape == (2, 1, 45, 2)
    assert torch.equal(keys[:, :, :3], start)
    assert cache.get_seq_length() == 45


def test_keep_rows_drops_the_others_in_every_layer():
    rows = torch.arange(3, dtype=torch.float32).view(3, 1, 1, 1).expand(3, 1, 4, 1)
    cache = GrowingCache([(rows, rows), (rows * 10, rows)], room=1)
    cache.keep_rows([2, 0])
    first, second = cache.kv()
    assert first[0][:, 0, 0, 0].tolist() == [2, 0]
    assert second[0][:, 0, 0, 0].tolist() == [20, 0]
    keys, _ = cache.update(torch.ones(2, 1, 1, 1), torch.ones(2, 1, 1, 1), 0)
    assert keys.shape == (2, 1, 5, 1)


def test_an_empty_cache_takes_its_shape_from_the_first_update():
    cache = GrowingCache([None], room=0)
    assert cache.get_seq_length() == 0
    keys, _ = cache.update(torch.ones(1, 2, 3, 4), torch.ones(1, 2, 3, 4), 0)
    assert keys.shape == (1, 2, 3, 4)
    assert cache.get_seq_length() == 3
