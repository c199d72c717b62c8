"""One job on the decoder-only engine: plans, batches, greedy answers, teacher forcing.

Every prompt token the job computes is kept in its prefix store (``PrefixStore``): the full
context first, then what each batch adds. A coalition reuses the longest stored prefix of
its prompt and computes the rest, together with a draft of its likeliest answers
(``AnswerBook``), in one forward pass; decoding continues only where greedy decoding leaves
the draft, with look-up drafts verified in each step (``greedy``). How a batch sits in
memory is the batch layout's business (``batching.tree``, ``batching.linear``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import torch

from worker.engine.batching.budget import single_coalition, split_on_oom, store_slots, token_budget
from worker.engine.batching.linear import LinearBatch
from worker.engine.batching.packing import shared_prefix
from worker.engine.batching.plan import CoalitionPlan
from worker.engine.batching.prefixes import PrefixStore
from worker.engine.batching.tree import TreeBatch, full_context
from worker.engine.causal.greedy import GreedyWalks, RowBatch
from worker.engine.causal.planning import ExactPlanner, FastPlanner, Planner
from worker.engine.errors import ContextTooLong
from worker.engine.prompt_layout import PromptLayout
from worker.engine.session import DecodingSession
from worker.engine.speculation.draft import DRAFT_MASS, FAST_DRAFT_MASS, DraftTree
from worker.engine.speculation.lookup import LookupDrafts, corpus_of
from worker.engine.stopping import StopRule
from worker.shapley.oracle import Masks, OracleStats
from worker.shapley.units import Unit

if TYPE_CHECKING:
    from worker.engine.causal.engine import CausalEngine

MIN_BATCH = 4  # the smallest batch a growing job starts with


class CausalSession(DecodingSession):
    """One job on a :class:`CausalEngine` (see the module docstring for what is shared)."""

    def __init__(self, engine: CausalEngine, layout: PromptLayout, max_new_tokens: int):
        self.engine, self.layout, self.max_new_tokens = engine, layout, max_new_tokens
        self.full = layout.full()
        if len(self.full) + max_new_tokens > engine.max_context_tokens:
            raise ContextTooLong(len(self.full) + max_new_tokens, engine.max_context_tokens)
        options = engine.options
        newline = engine.newline_ids if options.stop_at_newline else frozenset()
        stop = StopRule(engine.tokenizer, frozenset(engine.eos), max_new_tokens, newline)
        lookup = LookupDrafts(options.lookup_tokens, adaptive=False)
        super().__init__(engine.codec, stop, lookup, min(engine.eos) if engine.eos else None)
        self.stats = OracleStats(attention_backend=engine.attention_backend, fast=options.fast)
        self.store = PrefixStore(max(store_slots(engine), len(self.full)))
        self.walker = GreedyWalks(engine, stop, lookup, max_new_tokens, self.stats)
        self.planner: Planner = (
            FastPlanner(layout, self.full, self._compute_full, options.fast_recompute)
            if options.fast
            else ExactPlanner(layout, self.store, options, self._compute_full)
        )

    # --- the Oracle protocol -------------------------------------------------------------

    def answers(self, units: Sequence[Unit], masks: Masks) -> list[str]:
        plans = self.plans(units, masks)
        self._vote_known((p.game, p.key, p.mask) for p in plans)
        todo = list({p.key: p for p in plans if p.key not in self._memo}.values())
        if todo:
            self._decode(todo)
        return [self._text(self._memo[p.key]) for p in plans]

    def log_probs(
        self, units: Sequence[Unit], masks: Masks, answer: str
    ) -> npt.NDArray[np.float64]:
        plans = self.plans(units, masks)
        target = self._target(answer)
        out = np.zeros(len(plans), dtype=np.float64)
        for batch in self._batches(plans, extra=len(target)):
            batch = [(i, self.planner.replan(p)) for i, p in batch]
            scores = split_on_oom(lambda b: self._score_batch(b, target), batch)
            out[[i for i, _ in batch]] = scores
        return out

    def answer_tokens(self, units: Sequence[Unit], masks: Masks) -> list[tuple[int, ...]]:
        """The generated token ids per coalition, with the EOS or newline token that ended it."""
        self.answers(units, masks)
        return [self._memo[p.key] for p in self.plans(units, masks)]

    def prompt_ids(self, units: Sequence[Unit], mask: np.ndarray) -> tuple[int, ...]:
        """The coalition's prompt ids (what a plain ``generate`` reference must be given)."""
        return self.layout.ids(units, mask)

    # --- plans ---------------------------------------------------------------------------

    def plans(self, units: Sequence[Unit], masks: Masks) -> list[CoalitionPlan]:
        return self.planner.plans(units, masks)

    def _compute_full(self) -> None:
        """The full-context prompt, computed once per job as the store's first chain."""
        if not len(self.store):
            states = single_coalition(lambda: full_context(self.engine, self.full, self.stats))
            self.store.add(-1, self.full, states, 0)

    def _batches(
        self, plans: Sequence[CoalitionPlan], extra: int, grow: bool = False
    ) -> list[list[tuple[int, CoalitionPlan]]]:
        """Batches of (index, plan) in prompt order, so that coalitions sharing leading
        tokens land together (and later batches find earlier ones' prompts in the store); a
        batch holds what fits the memory budget once shared tokens are counted once (plus
        ``extra`` draft or target tokens per row). ``grow``: early in a job a batch holds at
        most twice as many coalitions as were decoded before it, so that the answers the
        drafts are made of accumulate before the big batches run."""
        order = sorted(range(len(plans)), key=lambda i: (plans[i].prompt, plans[i].branch_key))
        context = len(self.full) + self.max_new_tokens + extra
        options = self.engine.options
        budget = options.batch_tokens or token_budget(self.engine, context)
        share = options.prefix_tree and not self.engine.linear
        out: list[list[tuple[int, CoalitionPlan]]] = []
        current: list[tuple[int, CoalitionPlan]] = []
        used, known = 0, len(self._memo)
        for i in order:
            plan = plans[i]
            cost = row_cost(plan, extra)
            if share and current and current[-1][1].branch_key == plan.branch_key:
                cost -= shared_prefix(current[-1][1].new, plan.new)
            cap = min(options.max_batch, max(MIN_BATCH, 2 * known)) if grow else options.max_batch
            if current and (used + cost > budget or len(current) >= cap):
                out.append(current)
                known += len(current)
                current, used, cost = [], 0, row_cost(plan, extra)
            current.append((i, plan))
            used += cost
        if current:
            out.append(current)
        return out

    # --- greedy answers ------------------------------------------------------------------

    def _decode(self, plans: list[CoalitionPlan]) -> None:
        for batch in self._batches(plans, extra=self._draft_size(), grow=True):
            batch = [(i, self.planner.replan(p)) for i, p in batch]
            split_on_oom(self._decode_batch, batch)

    def _draft_size(self) -> int:
        options = self.engine.options
        return self.book.nodes(options.draft_nodes) if options.speculative else 0

    def _decode_batch(self, batch: list[tuple[int, CoalitionPlan]]) -> list[None]:
        """Prompts and each coalition's draft in one pass; then cached steps (with look-up
        drafts) for the coalitions whose greedy answer left their draft."""
        plans = [p for _, p in batch]
        drafts = [self._draft(p) for p in plans]
        rows = self._rows(plans, drafts)
        self.stats.batch_sizes.append(len(batch))
        hidden = rows.prompt_pass()
        self._store_prompts(rows, plans)
        outputs: list[list[int]] = []
        for c, walk in enumerate(self.walker.walks(drafts, hidden)):
            outputs.append(walk.tokens)
            rows.settle(c, walk.last_node)
        answers = list(self._answer_ids.values())
        corpora = [corpus_of([p.prompt, *answers]) for p in plans]
        self.walker.finish(rows, outputs, corpora)
        for plan, output in zip(plans, outputs, strict=True):
            self._keep(plan, output)
        return []

    def _rows(self, plans: list[CoalitionPlan], drafts: list[DraftTree | None]) -> RowBatch:
        engine = self.engine
        if engine.linear:
            room = self.max_new_tokens + engine.options.lookup_tokens + 2
            return LinearBatch(engine, self.store, plans, drafts, engine.kernel, room, self.stats)
        return TreeBatch(engine, self.store, plans, drafts, engine.options.prefix_tree, self.stats)

    def _draft(self, plan: CoalitionPlan) -> DraftTree | None:
        """The coalition's draft: the job's likeliest answers for it (the linear layout
        verifies only the likeliest one); None: no speculation."""
        options = self.engine.options
        if not options.speculative or not self.book.answers:
            return None
        if self.engine.linear:
            chain = DraftTree(max_nodes=options.draft_nodes)
            chain.add(self.book.ranked(plan.game, plan.mask)[0])
            return chain
        mass = FAST_DRAFT_MASS if options.fast else DRAFT_MASS
        return self.book.draft(plan.game, plan.mask, options.draft_nodes, mass)

    def _store_prompts(self, rows: RowBatch, plans: list[CoalitionPlan]) -> None:
        """Add the prompt tokens the pass just computed to the prefix store."""
        for c, plan in enumerate(plans):
            if plan.stored:
                parent = int(plan.keep[-1]) if plan.reach else -1
                self.store.add(parent, plan.new[: plan.stored], rows.prompt_kv(c), plan.start)

    def _keep(self, plan: CoalitionPlan, output: list[int]) -> None:
        answer = tuple(output)
        self._remember(plan.key, answer, plan.game, plan.mask)

    # --- teacher forcing -----------------------------------------------------------------

    def _score_batch(
        self, batch: list[tuple[int, CoalitionPlan]], target: tuple[int, ...]
    ) -> list[float]:
        plans = [p.extended(target) for _, p in batch]
        rows = self._rows(plans, [None] * len(plans))
        self.stats.batch_sizes.append(len(batch))
        rows.prompt_pass()
        self._store_prompts(rows, plans)
        n = len(target)
        logits = self.engine.logits(rows.forced(n))
        chosen = torch.log_softmax(logits, -1)[:, torch.arange(n), torch.tensor(target)]
        return chosen.double().sum(-1).tolist()


def row_cost(plan: CoalitionPlan, extra: int) -> int:
    """Token positions a plan adds to a batch: its new tokens and ``extra`` draft or target
    tokens; a plan that places its reused slots itself (fast mode) also brings its own copy
    of them (``TreeBatch`` gives it a row of its own), where others share the store's."""
    own = plan.reach if plan.placed is not None else 0
    return len(plan.new) + extra + own
