"""A batch of coalitions packed into one cache row as a tree of token nodes.

The coalitions of one job share most of their prompts: the full-context prefix (computed
once per job) and, inside a batch, whatever leading tokens they have in common after it.
Packing a batch as a prefix tree computes every shared token once and needs no padding.
Draft tokens (the job's answer tree, look-up chains) hang off any node the same way. A
node sees exactly its own ancestors (and the full-context slots its branch reuses), so a
rejected draft never influences anything: it simply is nobody's ancestor.

Everything here is plain data (numpy); ``causal.session`` turns it into model inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

Bools = npt.NDArray[np.bool_]


@dataclass
class PackedTree:
    """Nodes in computation order after ``reach`` reused slots (the row's region: stored
    prefix slots at ``reach_positions``, by default 0, 1, ...).

    Node ``i`` holds ``tokens[i]`` at ``positions[i]``, belongs to branch ``branches[i]``
    (which reused slots it may see) and has the node path ``paths[i]`` (its
    ancestors and itself, in order). Its key slot in the cache is ``reach + i``.
    """

    reach: int
    reach_positions: npt.NDArray[np.int64] | None = None
    tokens: list[int] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)
    branches: list[int] = field(default_factory=list)
    paths: list[npt.NDArray[np.int64]] = field(default_factory=list)
    visible: list[Bools] = field(default_factory=list)
    computed: int = 0
    _children: dict[tuple[int, int, int], int] = field(default_factory=dict)
    _branch_keys: dict[object, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.tokens)

    def branch(self, visible: int | Bools, key: object | None = None) -> int:
        """A branch seeing the first ``visible`` reused slots (or those flagged).
        Equal ``key`` values return the same branch; ``None`` always makes a new one."""
        if key is not None and key in self._branch_keys:
            return self._branch_keys[key]
        if isinstance(visible, int):
            flags = np.arange(self.reach) < visible
        else:
            flags = np.zeros(self.reach, dtype=bool)
            flags[: len(visible)] = visible
        self.visible.append(flags)
        number = len(self.visible) - 1
        if key is not None:
            self._branch_keys[key] = number
        return number

    def add(self, branch: int, parent: int, token: int, position: int, share: bool) -> int:
        """Append a node under ``parent`` (-1: the branch's root); with ``share`` an equal
        node already there (same branch, parent and token) is reused instead."""
        key = (branch, parent, token)
        if share and key in self._children:
            return self._children[key]
        node = len(self.tokens)
        self.tokens.append(int(token))
        self.positions.append(int(position))
        self.branches.append(branch)
        above = self.paths[parent] if parent >= 0 else np.zeros(0, dtype=np.int64)
        self.paths.append(np.append(above, node))
        if share:
            self._children[key] = node
        return node

    def add_path(
        self, branch: int, parent: int, tokens: Sequence[int], start: int, share: bool
    ) -> list[int]:
        """Append ``tokens`` as a chain below ``parent``, the first at ``start``."""
        nodes = []
        for offset, token in enumerate(tokens):
            parent = self.add(branch, parent, token, start + offset, share)
            nodes.append(parent)
        return nodes

    def pending(self) -> range:
        """The nodes not yet computed (they are computed in index order)."""
        return range(self.computed, len(self.tokens))

    def pad_to(self, length: int, token: int) -> None:
        """Append padding nodes until the tree has ``length`` nodes: each sees only itself
        and is nobody's ancestor (rows of a batch must hold equally many slots)."""
        if len(self.tokens) >= length:
            return
        blind = self.branch(0, key=("padding",))
        while len(self.tokens) < length:
            self.add(blind, -1, token, 0, share=False)

    def seen(self, queries: range, window: int | None) -> Bools:
        """(Q, K) visibility of the ``queries`` nodes over every key slot up to the last
        query: their branch's reused slots and their own path, at or before their
        position and, for sliding-window layers, within ``window`` positions."""
        keys = self.reach + queries.stop
        out = np.zeros((len(queries), keys), dtype=bool)
        for row, node in enumerate(queries):
            out[row, : self.reach] = self.visible[self.branches[node]]
            out[row, self.reach + self.paths[node]] = True
        if window is not None:
            reused = np.arange(self.reach) if self.reach_positions is None else self.reach_positions
            key_pos = np.concatenate([reused, self.positions[: queries.stop]])
            query_pos = np.asarray(self.positions[queries.start : queries.stop])
            out &= (query_pos[:, None] - key_pos[None, :]) < window
        return out


def shared_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the common prefix of two token sequences."""
    n = min(len(a), len(b))
    if n == 0:
        return 0
    diff = np.flatnonzero(np.asarray(a[:n]) != np.asarray(b[:n]))
    return int(diff[0]) if diff.size else n


def split_rows(
    branches: Sequence[object],
    prompts: Sequence[Sequence[int]],
    extra: int,
    reach: int,
    key_cost: float,
    slot_cost: float = 0.0,
    blocks: bool = False,
) -> list[list[int]]:
    """Group a batch's coalitions (given in prefix order) into cache rows.

    One row for everything shares the most but makes every query attend over every other
    coalition's slots (masked, yet computed); one row per coalition shares nothing and pads
    to the longest. Coalitions that share leading tokens (a family) stay in one row; the
    families are spread over ``R`` rows, longest first onto the emptiest row, and ``R`` is
    the one with the least estimated cost, in token positions' worth of work for rows ``W``
    nodes wide: ``R * W * (1 + key_cost * (reach + W / 2))`` to compute them
    (``key_cost``: attending to one key relative to computing one token; a query attends
    to the reused slots and, on average, half the row's nodes) plus
    ``R * (reach + W) * slot_cost`` to copy and read every row's slots over the batch's
    passes (``slot_cost``: moving one slot's keys and values relative to computing one
    token; it is what makes a row per coalition expensive when they all reuse a long prefix).
    With ``blocks`` (``key_blocks``: queries attend only to keys they can see) a query
    attends to the reused slots and half its own family, whatever shares its row, so
    more rows only add padding and one row wins.
    """
    families, sizes = _families(branches, prompts, extra)
    best: tuple[float, list[list[int]]] | None = None
    for count in range(1, len(families) + 1):
        rows, width = _spread(sizes, count)
        # queries skip keys after their own slot (``attention.sdpa``), or other families' keys
        attended = reach + (max(sizes) if blocks else width) / 2
        cost = count * width * (1 + key_cost * attended) + count * (reach + width) * slot_cost
        if best is None or cost < best[0]:
            members = [sorted(i for f in sorted(row) for i in families[f]) for row in rows]
            best = (cost, members)
    assert best is not None
    return best[1]


def _families(
    branches: Sequence[object], prompts: Sequence[Sequence[int]], extra: int
) -> tuple[list[list[int]], list[int]]:
    """Runs of consecutive coalitions on one branch that share leading tokens, and the
    nodes each family adds (shared tokens once, ``extra`` per coalition)."""
    families: list[list[int]] = []
    sizes: list[int] = []
    for i, prompt in enumerate(prompts):
        shared = 0
        if families and branches[families[-1][-1]] == branches[i]:
            shared = shared_prefix(prompts[families[-1][-1]], prompt)
        if shared == 0:
            families.append([])
            sizes.append(0)
        families[-1].append(i)
        sizes[-1] += len(prompt) - shared + extra
    return families, sizes


def _spread(sizes: list[int], count: int) -> tuple[list[list[int]], int]:
    """Families (by index) over ``count`` rows, longest first onto the emptiest row; and the
    widest row's width."""
    rows: list[list[int]] = [[] for _ in range(count)]
    widths = [0] * count
    for f in sorted(range(len(sizes)), key=lambda f: -sizes[f]):
        r = widths.index(min(widths))
        rows[r].append(f)
        widths[r] += sizes[f]
    return rows, max(widths)
