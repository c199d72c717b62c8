"""Block-sparse attention for the tree layout: each block of queries over only the keys
some query in it can see.

A tree-layout row packs many coalitions, and dense SDPA computes every query against
every key of the row, masked or not: a coalition's prompt tokens are scored against the
other coalitions' reused slots and nodes only to be thrown away (on 10 NaturalQuestions
documents, about 2.2 pairs computed per pair used). The masks say exactly who sees what,
so before a pass the queries are cut into runs whose visible keys overlap (``plan_row``),
and each run attends to the union of those keys, gathered. Every query still sees
exactly its own keys with the mask's values, so the result is what the dense call gives
(up to the order of floating-point sums).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch

from worker.engine.attention import bf16 as bf16_attention

# A call of its own (launch, gathers, the Python around them) costs about as much as this
# many query-key pairs of scores and values on a CPU; a gathered key about one pair.
CALL_PAIRS = 512
GATHER_PAIRS = 1


@dataclass(frozen=True)
class Block:
    """Queries ``start:end`` of one row attend to ``keys`` (ascending key slots)."""

    start: int
    end: int
    keys: npt.NDArray[np.int64]


def plan_row(seen: npt.NDArray[np.bool_]) -> list[Block]:
    """Cut a row's (Q, K) visibility into runs of consecutive queries, each with the union
    of their visible keys, choosing greedily the cut with the fewer estimated pairs:
    extend the run by the next query (every query of the run then pays the union) or
    start a new run (one more call and gather)."""
    queries = seen.shape[0]
    blocks: list[Block] = []
    start, union = 0, seen[0].copy()
    size = int(np.count_nonzero(union))
    for q in range(1, queries):
        row = seen[q]
        merged = union | row
        merged_size = int(np.count_nonzero(merged))
        alone = int(np.count_nonzero(row))
        run = q - start
        extend = (run + 1) * merged_size + GATHER_PAIRS * merged_size
        split = run * size + alone + GATHER_PAIRS * (size + alone) + CALL_PAIRS
        if extend <= split:
            union, size = merged, merged_size
            continue
        blocks.append(Block(start, q, np.flatnonzero(union)))
        start, union, size = q, row.copy(), alone
    blocks.append(Block(start, queries, np.flatnonzero(union)))
    return blocks


def computed_pairs(blocks: list[Block]) -> int:
    """Query-key pairs the blocks compute (for comparison with the dense ``Q * K``)."""
    return sum((b.end - b.start) * len(b.keys) for b in blocks)


class _Gathered:
    """One block ready to run: its query slice, its keys (a slice when contiguous, else an
    index tensor) and its part of the mask."""

    def __init__(self, block: Block, mask: torch.Tensor) -> None:
        self.queries = slice(block.start, block.end)
        keys = block.keys
        contiguous = len(keys) > 0 and keys[-1] - keys[0] + 1 == len(keys)
        device = mask.device
        self.index: torch.Tensor | None = None
        self.span = slice(int(keys[0]), int(keys[-1]) + 1) if contiguous else None
        if self.span is None:
            self.index = torch.from_numpy(keys).to(device)
            self.mask = mask[:, self.queries].index_select(-1, self.index)
        else:
            self.mask = mask[:, self.queries, self.span]

    def keys(self, states: torch.Tensor) -> torch.Tensor:
        if self.span is not None:
            return states[..., self.span, :]
        assert self.index is not None
        return states.index_select(-2, self.index)


class KeyBlocks:
    """The block plans of one pass, one per mask the pass gives the model (Gemma's full and
    sliding-window layers have one each), found again by the mask a layer is called with."""

    def __init__(self) -> None:
        self._plans: list[tuple[torch.Tensor, list[list[_Gathered]]]] = []

    def add(self, mask: torch.Tensor, seen: npt.NDArray[np.bool_]) -> None:
        """Plan ``mask`` (rows, 1, Q, K) from its numpy twin ``seen`` (rows, Q, K)."""
        rows = [[_Gathered(b, mask[r]) for b in plan_row(seen[r])] for r in range(len(seen))]
        self._plans.append((mask, rows))

    def find(self, mask: torch.Tensor) -> list[list[_Gathered]] | None:
        for planned, rows in self._plans:
            if planned.data_ptr() == mask.data_ptr() and planned.shape == mask.shape:
                return rows
        return None

    def attend(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        mask: torch.Tensor,
        scale: float | None,
        gqa: bool,
    ) -> torch.Tensor | None:
        """SDPA over (rows, heads, Q, dim) block by block; None when ``mask`` was not
        planned (the caller runs the dense call)."""
        rows = self.find(mask)
        if rows is None or len(rows) != query.shape[0]:
            return None
        out = query.new_zeros(query.shape[:-1] + (value.shape[-1],))
        for r, blocks in enumerate(rows):
            q, k, v = query[r : r + 1], key[r : r + 1], value[r : r + 1]
            for block in blocks:
                if block.mask.shape[-1] == 0:  # nothing visible: left zero
                    continue
                out[r : r + 1, :, block.queries] = bf16_attention.sdpa(
                    q[:, :, block.queries],
                    block.keys(k),
                    block.keys(v),
                    block.mask[None],
                    scale,
                    gqa,
                )
        return out
