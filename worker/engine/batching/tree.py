"""The tree layout: a batch of coalitions packed into cache rows as prefix trees.

Each row holds the stored slots its coalitions reuse (gathered from the job's prefix
store), then their prompts' new tokens as a prefix tree (shared leading tokens computed
once), a copy of each coalition's draft tree below its prompt, and the decoding steps.
One 4-D mask (``attention.masks.build_mask``) lets each node see exactly its ancestors and the
stored slots its branch reuses, so a row computes for every coalition what its prompt
alone would give; rejected drafts are nobody's ancestors. Arbitrary masks need SDPA (or
eager) attention; ``batching.linear`` is the layout FlashAttention can run.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import torch

from worker.engine.attention.key_blocks import KeyBlocks
from worker.engine.attention.masks import build_mask
from worker.engine.attention.rope_shift import move_keys
from worker.engine.batching.kvcache import KV, GrowingCache
from worker.engine.batching.model_facts import ModelFacts
from worker.engine.batching.packing import PackedTree, split_rows
from worker.engine.batching.plan import CoalitionPlan, Slots
from worker.engine.batching.prefixes import PrefixStore
from worker.engine.speculation.draft import DraftTree
from worker.shapley.oracle import OracleStats


class TreeBatch:
    """A packed batch mid-decoding: cache rows (one node tree each) and, per coalition,
    its row and the last computed node on its answer's path."""

    def __init__(
        self,
        engine: ModelFacts,
        store: PrefixStore,
        plans: list[CoalitionPlan],
        drafts: Sequence[DraftTree | None],
        share: bool,
        stats: OracleStats,
    ) -> None:
        self.engine, self.plans, self.stats = engine, plans, stats
        self.rows: list[PackedTree] = []
        self.row_of: list[int] = []
        self.leaves: list[int] = []
        self.cache = GrowingCache([], room=0)
        extra = max((len(d) for d in drafts if d is not None), default=0)
        self._pack(store, share, extra)
        self.draft_nodes = [self._hang(c, d) for c, d in enumerate(drafts)]
        self._chains: dict[int, list[int]] = {}
        self._hidden, self._first = torch.empty(0), 0

    # --- the RowBatch protocol -----------------------------------------------------------

    def prompt_pass(self) -> list[torch.Tensor]:
        """Compute every prompt and draft; per coalition the hidden states after its last
        prompt token and after each of its draft nodes (in the draft tree's order)."""
        hidden, first = self._run(len(self.plans))
        self._hidden, self._first = hidden, first
        asked = [[self.last[c], *nodes] for c, nodes in enumerate(self.draft_nodes)]
        return [self._at(hidden, first, c, nodes) for c, nodes in enumerate(asked)]

    def prompt_kv(self, c: int) -> list[KV]:
        """Keys and values ``(kv_heads, stored, head_dim)`` of the plan's stored tokens."""
        plan, row, tree = self.plans[c], self.row_of[c], self.tree(c)
        nodes = tree.paths[self.leaves[c]][: plan.stored]
        columns = torch.from_numpy(tree.reach + nodes).to(self.engine.torch_device)
        return [(k[row].index_select(1, columns), v[row].index_select(1, columns))
                for k, v in self.cache.kv()]  # fmt: skip

    def settle(self, c: int, draft_node: int) -> None:
        """The coalition's answer continues after this node of its draft (-1: the prompt)."""
        if draft_node >= 0:
            self.last[c] = self.draft_nodes[c][draft_node]

    def step(self, chains: dict[int, list[int]]) -> dict[int, torch.Tensor]:
        """Feed each coalition its chain (its last greedy token, then guesses) after its
        current node; the hidden states after every chain token."""
        self.keep(list(chains))
        for c, chain in chains.items():
            tree, last = self.tree(c), self.last[c]
            start = tree.positions[last] + 1
            self._chains[c] = tree.add_path(tree.branches[last], last, chain, start, False)
        hidden, first = self._run(len(chains))
        return {c: self._at(hidden, first, c, self._chains[c]) for c in chains}

    def advance(self, c: int, taken: int) -> None:
        """After a step the coalition keeps its chain's first ``1 + taken`` tokens."""
        self.last[c] = self._chains[c][taken]

    def forced(self, n: int) -> torch.Tensor:
        """Teacher forcing: the hidden states ``(coalitions, n, hidden)`` before each of the
        last ``n`` tokens of every plan (after ``prompt_pass``)."""
        out = []
        for c, leaf in enumerate(self.leaves):
            nodes = self.tree(c).paths[leaf][-n - 1 : -1].tolist()
            out.append(self._at(self._hidden, self._first, c, nodes))
        return torch.stack(out)

    def keep(self, coalitions: Sequence[int]) -> None:
        """Drop the cache rows none of ``coalitions`` is on (their decoding has ended)."""
        wanted = sorted({self.row_of[c] for c in coalitions})
        if len(wanted) == len(self.rows):
            return
        self.cache.keep_rows(wanted)
        self.rows = [self.rows[r] for r in wanted]
        renumber = {old: new for new, old in enumerate(wanted)}
        self.row_of = [renumber.get(r, -1) for r in self.row_of]

    # --- packing ---------------------------------------------------------------------------

    def tree(self, c: int) -> PackedTree:
        return self.rows[self.row_of[c]]

    def _pack(self, store: PrefixStore, share: bool, extra: int) -> None:
        """Rows holding the stored slots their plans reuse, then the plans' new tokens as
        prefix trees (shared leading tokens computed once when ``share``); coalitions are
        spread over rows by ``packing.split_rows``, one row each where plans place their
        slots themselves (``CoalitionPlan.placed``: a slot's key moves per coalition)."""
        plans = self.plans
        groups = self._groups(share, extra)
        regions = [np.unique(np.concatenate([plans[c].keep for c in group])) for group in groups]
        width = max(len(region) for region in regions)
        stored = np.asarray(store.positions, dtype=np.int64)
        places = [self._places(stored, group[0], region, width) for group, region in
                  zip(groups, regions, strict=True)]  # fmt: skip
        room = max(len(p.new) for p in plans) + extra + 64
        start = self._gather(store, regions, (width, room), stored, places)
        self.cache = GrowingCache(start, room=room, filled=width if width else None)
        self.row_of, self.leaves = [0] * len(plans), [0] * len(plans)
        for r, (group, region) in enumerate(zip(groups, regions, strict=True)):
            tree = PackedTree(width, places[r])
            for c in group:
                plan = plans[c]
                seen = np.zeros(width, dtype=bool)
                seen[: len(region)] = np.isin(region, plan.keep)
                branch = tree.branch(seen, plan.branch_key if share else None)
                self.leaves[c] = tree.add_path(branch, -1, plan.new, plan.start, share)[-1]
                self.row_of[c] = r
            self.rows.append(tree)
        self.last = list(self.leaves)

    @property
    def _placed(self) -> bool:
        """The plans place their reused slots themselves (fast mode): a row each, keys moved."""
        return any(p.placed is not None for p in self.plans)

    def _groups(self, share: bool, extra: int) -> list[list[int]]:
        plans, engine = self.plans, self.engine
        if self._placed:
            return [[c] for c in range(len(plans))]
        return split_rows(
            [p.branch_key if share else i for i, p in enumerate(plans)],
            [p.new for p in plans],
            extra,
            max(p.reach for p in plans),
            engine.key_cost,
            engine.slot_cost,
            blocks=engine.options.key_blocks,
        )

    def _places(
        self, stored: npt.NDArray[np.int64], first: int, region: Slots, width: int
    ) -> npt.NDArray[np.int64]:
        """The positions a row's reused slots take (padding at 0, never attended to); a row
        of placed slots holds one plan, ``first``."""
        at = np.zeros(width, dtype=np.int64)
        placed = self.plans[first].placed
        at[: len(region)] = stored[region] if placed is None else placed
        return at

    def _gather(
        self,
        store: PrefixStore,
        regions: list[Slots],
        size: tuple[int, int],
        stored: npt.NDArray[np.int64],
        places: list[npt.NDArray[np.int64]],
    ) -> list[KV | None]:
        """The rows' reused keys and values (``size``: their width and the room after them),
        keys moved where plans place their slots."""
        width, room = size
        if not width:
            return [None] * self.engine.layers
        layers = store.gather(regions, width, room)
        if self._placed:
            shifts = np.stack([
                np.pad(stored[region], (0, width - len(region))) - at
                for region, at in zip(regions, places, strict=True)
            ])  # fmt: skip
            config = self.engine.model.config.get_text_config()
            shift = torch.from_numpy(shifts).to(self.engine.torch_device)
            move_keys(self.engine.base, config, layers, shift)
        return list(layers)

    def _hang(self, c: int, draft: DraftTree | None) -> list[int]:
        """A copy of the draft tree below the coalition's last prompt token (never shared:
        its states depend on that prompt)."""
        if draft is None:
            return []
        packed, leaf = self.tree(c), self.leaves[c]
        length = self.plans[c].length
        branch, nodes = packed.branches[leaf], list[int]()
        for token, parent, depth in zip(draft.tokens, draft.parents, draft.depths, strict=True):
            above = nodes[parent] if parent >= 0 else leaf
            nodes.append(packed.add(branch, above, token, length - 1 + depth, share=False))
        return nodes

    # --- running -----------------------------------------------------------------------------

    def _run(self, coalitions: int) -> tuple[torch.Tensor, int]:
        """Compute every row's pending nodes (rows padded to one width) in one forward pass
        over ``coalitions`` coalitions; the final hidden states (rows, width, hidden) and the
        node index of the first column."""
        return run_rows(self.engine, self.rows, self.cache, coalitions, self.stats, causal=False)

    def _at(self, hidden: torch.Tensor, first: int, c: int, nodes: Sequence[int]) -> torch.Tensor:
        columns = torch.tensor([node - first for node in nodes], device=hidden.device)
        return hidden[self.row_of[c]].index_select(0, columns)


def run_rows(
    engine: ModelFacts,
    rows: list[PackedTree],
    cache: GrowingCache,
    coalitions: int,
    stats: OracleStats,
    causal: bool,
) -> tuple[torch.Tensor, int]:
    """One forward pass over every row's pending nodes. ``causal``: the rows are plain
    sequences from position 0 and the model's own causal masking applies (no mask built)."""
    device = engine.torch_device
    first = rows[0].computed
    width = max(len(tree) for tree in rows)
    for tree in rows:
        tree.pad_to(width, engine.pad)
    queries = range(first, width)
    ids = torch.tensor([tree.tokens[first:] for tree in rows], device=device)
    pos = torch.tensor([tree.positions[first:] for tree in rows], device=device)
    blocks = KeyBlocks() if engine.options.key_blocks and not causal else None
    mask = None if causal else build_mask(engine.mask_spec, rows, queries, device, blocks)
    extra = {"key_blocks": blocks} if blocks is not None else {}
    out = engine.base(
        input_ids=ids,
        position_ids=pos,
        attention_mask=mask,
        cache=cache,
        use_cache=True,
        **extra,
    )
    for tree in rows:
        tree.computed = width
    stats.forward_passes += coalitions
    stats.tokens_computed += ids.numel()
    hidden: torch.Tensor = out.last_hidden_state
    return hidden, first


def full_context(engine: ModelFacts, full: Sequence[int], stats: OracleStats) -> list[KV]:
    """Keys and values ``(kv_heads, len(full), head_dim)`` of the full-context prompt, from
    one plain causal pass (it counts as one forward pass)."""
    tree = PackedTree(0)
    tree.add_path(tree.branch(0), -1, full, 0, share=False)
    cache = GrowingCache([None] * engine.layers, room=0)
    run_rows(engine, [tree], cache, 1, stats, causal=True)
    return [(k[0], v[0]) for k, v in cache.kv()]
