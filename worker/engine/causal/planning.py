"""How a causal session turns coalitions into plans (``CoalitionPlan``): the exact planner
or the fast one, chosen once when the session opens (``EngineOptions.fast`` of the engine
the session runs on), so no step of a job asks again which mode it is in.

Exact: each coalition's own prompt, after the longest prefix the job's store holds (re-matched
just before its batch runs, as earlier batches store more). Fast (approximate): the
full-context cache's slots of what the coalition keeps, then the question tail.
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
        self, layout: PromptLayout, full: tuple[int, ...], compute_full: Callable[[], None]
    ) -> None:
        self.layout, self.full, self.compute_full = layout, full, compute_full

    def plans(self, units: Sequence[Unit], masks: Masks) -> list[CoalitionPlan]:
        rows = check_masks(units, masks)
        self.compute_full()
        game = game_of(units)
        tail = self.layout.tail
        start = len(self.full) - len(tail)
        plans = []
        for row in rows:
            keep = np.flatnonzero(self.layout.kept_slots(units, row)).astype(np.int64)
            key = ("fast", keep.tobytes())
            plans.append(CoalitionPlan(key, self.full, keep, tail, start, 0, game, row))
        return plans

    def replan(self, plan: CoalitionPlan) -> CoalitionPlan:
        return plan  # the full context is stored before any plan is made
