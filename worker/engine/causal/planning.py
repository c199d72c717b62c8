"""How a causal session turns coalitions into plans (``CoalitionPlan``): the exact planner
or the fast one, chosen once when the session opens (``EngineOptions.fast`` of the engine
the session runs on), so no step of a job asks again which mode it is in.

Exact: each coalition's own prompt, after the longest prefix the job's store holds (re-matched
just before its batch runs, as earlier batches store more). Fast (approximate): the
full-context cache's slots of what the coalition keeps, their keys moved to the positions
they have in the coalition's own prompt (``attention.rope_shift``), then the question tail;
with ``EngineOptions.fast_recompute`` the last share of the kept tokens that follow the
first removed one is recomputed with the tail (``hybrid_split``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Protocol

import numpy as np

from worker.engine.base import EngineOptions, check_masks
from worker.engine.batching.plan import NO_SLOTS, CoalitionPlan, Slots
from worker.engine.batching.prefixes import PrefixStore
from worker.engine.prompt_layout import PromptLayout
from worker.engine.speculation.draft import game_of
from worker.shapley.oracle import Masks
from worker.shapley.units import Unit


class Planner(Protocol):
    def plans(self, units: Sequence[Unit], masks: Masks) -> list[CoalitionPlan]: ...

    def replan(self, plan: CoalitionPlan) -> CoalitionPlan:
        """The plan against what the store holds now."""
        ...


class ExactPlanner:
    def __init__(
        self,
        layout: PromptLayout,
        store: PrefixStore,
        options: EngineOptions,
        compute_full: Callable[[], None],
    ) -> None:
        self.layout, self.store, self.options = layout, store, options
        self.compute_full = compute_full

    def plans(self, units: Sequence[Unit], masks: Masks) -> list[CoalitionPlan]:
        rows = check_masks(units, masks)
        if self.options.prefix_cache:
            self.compute_full()
        game = game_of(units)
        prompts = [self.layout.ids(units, row) for row in rows]
        return [self.replan(CoalitionPlan(p, p, NO_SLOTS, p, 0, 0, game, row))
                for p, row in zip(prompts, rows, strict=True)]  # fmt: skip

    def replan(self, plan: CoalitionPlan) -> CoalitionPlan:
        keep = self._match(plan.prompt)
        new = plan.prompt[len(keep) :]
        stored = len(new) if self.options.prefix_tree else 0
        return replace(plan, keep=keep, new=new, start=len(keep), stored=stored)

    def _match(self, prompt: tuple[int, ...]) -> Slots:
        """Stored slots covering the prompt's leading tokens (at least one token is left)."""
        if not self.options.prefix_cache:
            return NO_SLOTS
        return self.store.match(prompt, len(prompt) - 1)


class FastPlanner:
    def __init__(
        self,
        layout: PromptLayout,
        full: tuple[int, ...],
        compute_full: Callable[[], None],
        recompute: float = 0.0,
    ) -> None:
        self.layout, self.full, self.compute_full = layout, full, compute_full
        self.recompute = recompute

    def plans(self, units: Sequence[Unit], masks: Masks) -> list[CoalitionPlan]:
        rows = check_masks(units, masks)
        self.compute_full()
        game = game_of(units)
        tail = self.layout.tail
        plans = []
        for row in rows:
            kept = self.layout.kept_slots(units, row)
            keep, redo = hybrid_split(kept, self.recompute)
            new = tuple(self.full[i] for i in redo) + tail
            key = ("fast", kept.tobytes())
            placed = np.arange(len(keep), dtype=np.int64)  # every removed gap closed
            plan = CoalitionPlan(key, self.full, keep, new, len(keep), 0, game, row, placed)
            plans.append(plan)
        return plans

    def replan(self, plan: CoalitionPlan) -> CoalitionPlan:
        return plan  # the full context is stored before any plan is made


def hybrid_split(kept: np.ndarray, share: float) -> tuple[Slots, Slots]:
    """Which kept full-context slots fast mode reuses and which it recomputes.

    Slots before the first removed one hold exactly what the coalition's own prompt would
    (the cache is causal); those after it saw removed text. The last ``share`` of them is
    recomputed with the question tail (0: none, plain fast mode; 1: all, exact up to the
    documents' numbering). Measured in ``bench/fast_recompute.py``: recomputing the last
    tokens buys little agreement per token (docs/performance.md).
    """
    slots = np.flatnonzero(kept).astype(np.int64)
    removed = np.flatnonzero(~kept)
    if not len(removed):
        return slots, NO_SLOTS
    count = int(np.ceil(max(share, 0.0) * np.count_nonzero(slots > removed[0])))
    return slots[: len(slots) - count], slots[len(slots) - count :]
