"""The job's prefix store: keys and values of every prompt token it has computed, as a trie.

An exact coalition must compute its prompt from the first token where it differs from
anything already computed: the full context (computed once per job) and, just as well,
the prompts of earlier batches. Random coalitions of ten documents share few tokens with
the full context (they usually drop one of the first documents) but many with each
other: 128 of them form a trie about 40% the size of their prompts laid end to end. The
store keeps every computed prompt token's keys and values under its (parent, token) node,
so a later batch reuses the longest stored prefix of each prompt, wherever it came from.
A node's keys and values depend only on the tokens on its path, so reuse is exact.

Slots are appended in computation order and never move; the store stops growing at its
byte budget (later prompts then reuse what is there and compute the rest).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import torch

from worker.engine.batching.kvcache import KV

Slots = npt.NDArray[np.int64]


class PrefixStore:
    """Per layer one ``(kv_heads, slots, head_dim)`` key and value buffer, and the trie."""

    def __init__(self, budget_slots: int) -> None:
        self.budget_slots = budget_slots
        self.length = 0
        self.positions: list[int] = []
        self._children: dict[tuple[int, int], int] = {}
        self._layers: list[KV] = []

    def __len__(self) -> int:
        return self.length

    def match(self, prompt: Sequence[int], limit: int) -> Slots:
        """Slots of the longest stored prefix of ``prompt[:limit]``, in order."""
        slots, parent = [], -1
        for token in prompt[:limit]:
            child = self._children.get((parent, int(token)))
            if child is None:
                break
            slots.append(child)
            parent = child
        return np.asarray(slots, dtype=np.int64)

    def add(self, parent: int, tokens: Sequence[int], layers: Sequence[KV], start: int) -> int:
        """Store a chain computed below slot ``parent`` (-1: the root): ``layers`` hold its
        keys and values ``(kv_heads, len(tokens), head_dim)``, the first token at position
        ``start``. Tokens already stored are skipped; returns how many slots were added."""
        take: list[int] = []
        for offset, token in enumerate(tokens):
            key = (parent, int(token))
            child = self._children.get(key)
            if child is None:
                if self.length + len(take) >= self.budget_slots:
                    break
                child = self.length + len(take)
                self._children[key] = child
                self.positions.append(start + offset)
                take.append(offset)
            parent = child
        if take:
            index = torch.tensor(take, device=layers[0][0].device)
            self._append([(k.index_select(1, index), v.index_select(1, index)) for k, v in layers])
        return len(take)

    def gather(self, regions: Sequence[Slots], width: int, room: int = 0) -> list[KV]:
        """Per layer ``(rows, kv_heads, width + room, head_dim)``: row ``r`` holds the slots
        of ``regions[r]`` in order, then padding (copies of slot 0, never attended to), then
        ``room`` unwritten slots (a growing cache's, so it need not copy the rows again)."""
        index = np.zeros((len(regions), width), dtype=np.int64)
        for row, slots in enumerate(regions):
            index[row, : len(slots)] = slots
        flat = torch.from_numpy(index.reshape(-1)).to(self._layers[0][0].device)
        out = []
        for keys, values in self._layers:
            heads, _, dim = keys.shape
            shape = (heads, len(regions), width, dim)
            pair = []
            for cached in (keys, values):
                rows = cached.new_empty((len(regions), heads, width + room, dim))
                picked = cached.index_select(1, flat).view(shape).transpose(0, 1)
                rows[:, :, :width].copy_(picked)
                pair.append(rows)
            out.append((pair[0], pair[1]))
        return out

    def _append(self, layers: list[KV]) -> None:
        n = layers[0][0].shape[1]
        end = self.length + n
        if not self._layers:
            # a CPU buffer this large is mapped lazily: only the slots written take memory,
            # and the store never copies itself to grow (copies cost Gemma 3 5% of a job)
            lazy = layers[0][0].device.type == "cpu"
            size = max(end, self.budget_slots) if lazy else end
            self._layers = [(_room(k, size), _room(v, size)) for k, v in layers]
        elif end > self._layers[0][0].shape[1]:
            self._layers = [(_room(k[:, : self.length], end), _room(v[:, : self.length], end))
                            for k, v in self._layers]  # fmt: skip
        for (keys, values), (k, v) in zip(self._layers, layers, strict=True):
            keys[:, self.length : end] = k
            values[:, self.length : end] = v
        self.length = end


def _room(tensor: torch.Tensor, needed: int) -> torch.Tensor:
    """A buffer for at least ``needed`` slots (doubling), holding ``tensor`` first."""
    heads, length, dim = tensor.shape
    out = tensor.new_empty((heads, max(needed, 2 * length, 64), dim))
    out[:, :length] = tensor
    return out
