"""The linear layout: one coalition per row, a plain sequence, for FlashAttention.

FlashAttention's kernels take causal attention over rows of different lengths, not
arbitrary masks, so the tree layout's shared prefix trees and draft trees cannot run on
them. Here every row is one coalition's sequence in a preallocated buffer
``(rows, slots, kv_heads, head_dim)``: the stored slots it reuses (its prefix in order,
gathered from the job's prefix store), its new prompt tokens, and one draft chain (its
likeliest answer); decoding appends to it. A rejected draft is undone by not advancing
the row's length, so the next pass overwrites it. ``attention.flash.pick_kernel`` runs the step
(``flash_attn_with_kvcache`` on CUDA, its PyTorch reference elsewhere); the model's own
modules compute everything else, and the attention function (``attention.sdpa``) hands the
kernel the buffers through the ``linear_rows`` keyword argument.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from worker.engine.attention.flash import KvKernel
from worker.engine.batching.kvcache import KV
from worker.engine.batching.model_facts import ModelFacts
from worker.engine.batching.plan import CoalitionPlan
from worker.engine.batching.prefixes import PrefixStore
from worker.engine.speculation.draft import DraftTree
from worker.shapley.oracle import OracleStats


class LinearRows:
    """What the attention function needs in the linear layout: per layer the key and value
    buffers, each row's valid length, and the kernel."""

    def __init__(self, buffers: list[KV], seqlens: torch.Tensor, kernel: KvKernel) -> None:
        self.buffers, self.seqlens, self.kernel = buffers, seqlens, kernel

    def attend(
        self,
        module: torch.nn.Module,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        scaling: float | None,
        window: int | None,
        softcap: float | None,
    ) -> torch.Tensor:
        """Append this pass's keys and values to the rows and attend: (rows, queries,
        heads, head_dim) as transformers' attention functions return it."""
        keys, values = self.buffers[int(getattr(module, "layer_idx", 0))]
        scale = scaling if scaling is not None else query.shape[-1] ** -0.5
        return self.kernel(
            query.transpose(1, 2),
            keys,
            values,
            key.transpose(1, 2).contiguous(),
            value.transpose(1, 2).contiguous(),
            self.seqlens,
            softmax_scale=scale,
            window=window,
            softcap=softcap,
        )


class LinearBatch:
    """A batch with one row per coalition (see the module docstring)."""

    def __init__(
        self,
        engine: ModelFacts,
        store: PrefixStore,
        plans: list[CoalitionPlan],
        drafts: Sequence[DraftTree | None],
        kernel: KvKernel,
        room: int,
        stats: OracleStats,
    ) -> None:
        self.engine, self.plans, self.stats = engine, plans, stats
        self.chains = [_chain(d) for d in drafts]
        pending = [len(p.new) + len(ch) for p, ch in zip(plans, self.chains, strict=True)]
        reach = max(p.reach for p in plans)
        capacity = reach + max(pending) + room
        self.rows = list(range(len(plans)))  # coalition -> row
        self.lengths = [p.reach for p in plans]
        buffers = []
        gathered = store.gather([p.keep for p in plans], reach) if reach else []
        for layer in range(engine.layers):
            keys, values = _empty(engine, len(plans), capacity)
            if reach:
                k, v = gathered[layer]
                keys[:, :reach] = k.transpose(1, 2)
                values[:, :reach] = v.transpose(1, 2)
            buffers.append((keys, values))
        self.kv = LinearRows(buffers, self._seqlens(), kernel)
        self._hidden = torch.empty(0)

    # --- the RowBatch protocol -----------------------------------------------------------

    def prompt_pass(self) -> list[torch.Tensor]:
        """Compute every prompt and draft chain; per coalition the hidden states after its
        last prompt token and after each draft token."""
        feeds = [list(p.new) + ch for p, ch in zip(self.plans, self.chains, strict=True)]
        self._hidden = self._run(dict(enumerate(feeds)))
        out = []
        for c, plan in enumerate(self.plans):
            last = len(plan.new) - 1
            out.append(self._hidden[c, last : last + 1 + len(self.chains[c])])
            self.lengths[c] += len(plan.new)
        return out

    def prompt_kv(self, c: int) -> list[KV]:
        plan, row = self.plans[c], self.rows[c]
        span = slice(plan.reach, plan.reach + plan.stored)
        return [(k[row, span].transpose(0, 1), v[row, span].transpose(0, 1))
                for k, v in self.kv.buffers]  # fmt: skip

    def settle(self, c: int, draft_node: int) -> None:
        """The answer continues after the chain's first ``draft_node + 1`` tokens."""
        self.lengths[c] += draft_node + 1

    def step(self, chains: dict[int, list[int]]) -> dict[int, torch.Tensor]:
        self.keep(list(chains))
        hidden = self._run(chains)
        return {c: hidden[self.rows[c], : len(chain)] for c, chain in chains.items()}

    def advance(self, c: int, taken: int) -> None:
        self.lengths[c] += 1 + taken

    def forced(self, n: int) -> torch.Tensor:
        """Teacher forcing: hidden states before each of every plan's last ``n`` tokens."""
        out = []
        for c, plan in enumerate(self.plans):
            end = len(plan.new) - 1
            out.append(self._hidden[c, end - n : end])
        return torch.stack(out)

    def keep(self, coalitions: Sequence[int]) -> None:
        """Drop the rows of coalitions not listed (their decoding has ended)."""
        wanted = sorted(self.rows[c] for c in coalitions)
        if len(wanted) == len(self.kv.buffers[0][0]):
            return
        index = torch.tensor(wanted, device=self.engine.torch_device)
        self.kv.buffers = [(k.index_select(0, index), v.index_select(0, index))
                           for k, v in self.kv.buffers]  # fmt: skip
        renumber = {old: new for new, old in enumerate(wanted)}
        self.rows = [renumber.get(r, -1) for r in self.rows]

    # --- running -----------------------------------------------------------------------------

    def _seqlens(self, coalitions: Sequence[int] | None = None) -> torch.Tensor:
        order = sorted(coalitions or range(len(self.plans)), key=lambda c: self.rows[c])
        lengths = [self.lengths[c] for c in order]
        return torch.tensor(lengths, dtype=torch.int32, device=self.engine.torch_device)

    def _run(self, feeds: dict[int, list[int]]) -> torch.Tensor:
        """One pass: every listed coalition's tokens appended after its row's valid slots
        (rows right-padded to one width); the hidden states (rows, width, hidden)."""
        engine = self.engine
        order = sorted(feeds, key=lambda c: self.rows[c])
        width = max(len(feeds[c]) for c in order)
        ids = [feeds[c] + [engine.pad] * (width - len(feeds[c])) for c in order]
        starts = torch.tensor([self.lengths[c] for c in order], device=engine.torch_device)
        positions = starts[:, None] + torch.arange(width, device=engine.torch_device)
        self.kv.seqlens = self._seqlens(order)
        out = engine.base(
            input_ids=torch.tensor(ids, device=engine.torch_device),
            position_ids=positions,
            attention_mask=_no_mask(engine),
            use_cache=False,
            linear_rows=self.kv,
        )
        self.stats.forward_passes += len(order)
        self.stats.tokens_computed += len(order) * width
        hidden: torch.Tensor = out.last_hidden_state
        return hidden


def _chain(draft: DraftTree | None) -> list[int]:
    """The draft as a chain: the linear layout verifies one answer (the session drafts one)."""
    if draft is None:
        return []
    assert all(p == i - 1 for i, p in enumerate(draft.parents)), "a chain, not a tree"
    return list(draft.tokens)


def _empty(engine: ModelFacts, rows: int, capacity: int) -> KV:
    shape = (rows, capacity, engine.kv_heads, engine.head_dim)
    device, dtype = engine.torch_device, engine.model.dtype
    keys = torch.zeros(shape, device=device, dtype=dtype)
    return keys, torch.zeros_like(keys)


def _no_mask(engine: ModelFacts) -> Any:
    """A 4-D placeholder: transformers returns a ready mask as it is, so none is built
    (the kernel masks by row length)."""
    placeholder = torch.ones((1, 1, 1, 1), dtype=torch.bool, device=engine.torch_device)
    if engine.mask_spec.sliding_window is None:
        return placeholder
    return {"full_attention": placeholder, "sliding_attention": placeholder}
