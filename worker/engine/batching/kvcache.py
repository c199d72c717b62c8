"""A batch's KV cache that grows in place and can drop finished rows.

transformers' ``DynamicCache`` concatenates on every step, copying every row's whole cache
(the reused full-context slots included) once per layer per pass; with a few thousand
slots per row that copy costs as much as the step itself on a CPU. Here each layer keeps a
buffer with spare room, writes new keys and values into it, and doubles when full, so a
pass copies only what it adds. ``keep_rows`` drops the rows whose coalitions have all
finished, so decoding steps stop paying for them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from transformers import Cache, DynamicLayer

KV = tuple[torch.Tensor, torch.Tensor]


class GrowingLayer(DynamicLayer):  # type: ignore[no-untyped-call]  # transformers is untyped
    """One layer's keys and values, ``(rows, kv_heads, slots, head_dim)``, with spare room."""

    def __init__(self, start: KV | None, room: int, filled: int | None = None) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.room, self.length = room, 0
        if start is not None:
            self._start(*start, filled=filled)

    def _start(self, keys: torch.Tensor, values: torch.Tensor, filled: int | None = None) -> None:
        """Start from these keys and values; ``filled``: they are buffers whose first
        ``filled`` slots are valid and whose rest is room (taken as they are, no copy)."""
        self.device = keys.device
        if filled is None:
            self._keys, self._values = _with_room(keys, self.room), _with_room(values, self.room)
        else:
            self._keys, self._values = keys, values
        self.length = keys.shape[-2] if filled is None else filled
        self.is_initialized = True
        self._views()

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> KV:
        if not self.is_initialized:
            self._start(key_states, value_states)
            return self.current()
        end = self.length + key_states.shape[-2]
        if end > self._keys.shape[-2]:
            self._keys = _with_room(self._keys[..., : self.length, :], end)
            self._values = _with_room(self._values[..., : self.length, :], end)
        self._keys[..., self.length : end, :] = key_states
        self._values[..., self.length : end, :] = value_states
        self.length = end
        self._views()
        return self.current()

    def keep_rows(self, rows: torch.Tensor) -> None:
        self._keys = self._keys.index_select(0, rows)
        self._values = self._values.index_select(0, rows)
        self._views()

    def current(self) -> KV:
        """The valid keys and values (views: valid until the next update)."""
        return self._keys[..., : self.length, :], self._values[..., : self.length, :]

    def _views(self) -> None:
        self.keys = self._keys[..., : self.length, :]
        self.values = self._values[..., : self.length, :]


def _with_room(tensor: torch.Tensor, room: int) -> torch.Tensor:
    """A copy of ``tensor`` in a buffer holding at least ``room`` more slots (doubling)."""
    length = tensor.shape[-2]
    capacity = max(length + room, 2 * length, 16)
    out = tensor.new_empty((*tensor.shape[:-2], capacity, tensor.shape[-1]))
    out[..., :length, :] = tensor
    return out


class GrowingCache(Cache):
    """The cache a packed batch runs with: every layer starts from its rows' reused slots
    (``None``: empty, shaped by the first update; ``filled``: the slots given are buffers,
    valid up to ``filled``, with their room already in them)."""

    def __init__(self, layers: Sequence[KV | None], room: int, filled: int | None = None) -> None:
        super().__init__(layers=[GrowingLayer(start, room, filled) for start in layers])

    def keep_rows(self, rows: Sequence[int]) -> None:
        """Keep only these rows (in this order) in every layer."""
        index: torch.Tensor | None = None
        for layer in self.layers:
            assert isinstance(layer, GrowingLayer)
            if index is None:
                index = torch.tensor(list(rows), device=layer.device)
            layer.keep_rows(index)

    def kv(self) -> list[KV]:
        """Every layer's current keys and values (views: valid until the next update)."""
        out = []
        for layer in self.layers:
            assert isinstance(layer, GrowingLayer)
            out.append(layer.current())
        return out
