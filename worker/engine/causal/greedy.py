"""Greedy answers through drafts: the walks through each coalition's draft tree after the
prompt pass, then cached steps with look-up drafts until every answer stops.

The output head runs only where a walk needs a next token (``GreedyWalks.greedy``): on
Gemma 3 the head (262k words) costs more than the whole body for states no walk reaches.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
import torch

from worker.engine.batching.kvcache import KV
from worker.engine.speculation.acceptance import Walk, step
from worker.engine.speculation.draft import DraftTree
from worker.engine.speculation.lookup import LookupDrafts
from worker.engine.stopping import StopRule
from worker.shapley.oracle import OracleStats

_NO_DRAFT = DraftTree(0)


class RowBatch(Protocol):
    """What the session needs from a batch layout (``TreeBatch``, ``LinearBatch``)."""

    def prompt_pass(self) -> list[torch.Tensor]: ...
    def prompt_kv(self, c: int) -> list[KV]: ...
    def settle(self, c: int, draft_node: int) -> None: ...
    def step(self, chains: dict[int, list[int]]) -> dict[int, torch.Tensor]: ...
    def advance(self, c: int, taken: int) -> None: ...
    def forced(self, n: int) -> torch.Tensor: ...


class Head(Protocol):
    """The engine's output head as the walks use it."""

    @property
    def head_read_rows(self) -> int: ...
    def greedy_tokens(self, hidden: torch.Tensor) -> list[int]: ...


class GreedyWalks:
    """One session's greedy decoding over a batch's hidden states."""

    def __init__(
        self,
        head: Head,
        stop: StopRule,
        lookup: LookupDrafts,
        max_new_tokens: int,
        stats: OracleStats,
    ) -> None:
        self.head, self.stop, self.lookup = head, stop, lookup
        self.max_new_tokens, self.stats = max_new_tokens, stats

    def walks(self, drafts: list[DraftTree | None], hidden: list[torch.Tensor]) -> list[Walk]:
        """Greedy walks through every coalition's draft (``hidden[c]``: states after its
        prompt and after each draft node)."""
        trees = dict(enumerate(d or _NO_DRAFT for d in drafts))
        walks = self._walk(trees, {c: Walk([]) for c in trees}, dict(enumerate(hidden)))
        for walk in walks.values():
            self.stats.draft_tokens_proposed += walk.proposed
            self.stats.draft_tokens_accepted += walk.accepted
        return list(walks.values())

    def finish(self, rows: RowBatch, outputs: list[list[int]], corpora: list[Any]) -> None:
        """Cached greedy steps for the coalitions still going. Each step also proposes a
        look-up draft per coalition (``LookupDrafts.guess``) and keeps what greedy agrees with."""
        while True:
            active = [c for c, out in enumerate(outputs) if not self.stop.done(out)]
            if not active:
                return
            guesses = {c: self.guess(corpora[c], outputs[c]) for c in active}
            hidden = rows.step({c: [outputs[c][-1], *guesses[c]] for c in active})
            for c, taken in self.accepts(outputs, guesses, hidden).items():
                rows.advance(c, taken)

    def guess(self, corpus: np.ndarray, out: list[int]) -> list[int]:
        return self.lookup.guess(corpus, out, self.max_new_tokens - len(out) - 1)

    def accepts(
        self,
        outputs: list[list[int]],
        guesses: dict[int, list[int]],
        hidden: dict[int, torch.Tensor],
    ) -> dict[int, int]:
        """Append greedy tokens while they confirm each coalition's guess; per coalition how
        many guessed tokens were accepted (the index of the last chain node on its answer's
        path)."""
        trees = {c: DraftTree.path(g) for c, g in guesses.items()}
        walks = self._walk(trees, {c: Walk(outputs[c]) for c in guesses}, hidden)
        for c, walk in walks.items():
            self.lookup.settle(len(guesses[c]), walk.accepted)
        return {c: walk.accepted for c, walk in walks.items()}

    def _walk(
        self, trees: dict[int, DraftTree], walks: dict[int, Walk], hidden: dict[int, torch.Tensor]
    ) -> dict[int, Walk]:
        """Every coalition's walk through its draft (``hidden[c]``: its states before the
        draft and after each node). The output head runs on every state at once when drafts
        are mostly paths (``greedy``), else one level of all walks at a time, on the states
        the walks reach only: projecting every node of bushy drafts would cost Gemma's
        262k-word head more than its whole body for the nodes no walk takes."""
        levels = 1 + max((max(t.depths, default=0) for t in trees.values()), default=0)
        greedy = self.greedy(hidden, levels)
        going = list(walks)
        while going:
            tokens = greedy(going, [walks[c].last_node + 1 for c in going])
            going = [
                c for c, token in zip(going, tokens, strict=True)
                if step(walks[c], trees[c], token, self.stop.done)
            ]  # fmt: skip
        return walks

    def greedy(
        self, hidden: dict[int, torch.Tensor], levels: int
    ) -> Callable[[list[int], list[int]], list[int]]:
        """The greedy token after state ``at[i]`` of coalition ``going[i]``, for walks over
        ``hidden`` (per coalition its candidate states) at most ``levels`` deep.

        Every candidate state is projected in one call when that is cheaper than a call
        per level of the walks on the states they reach: a call reads the whole output head
        (Gemma's: 671 MB in fp32, 335 MB screened), which costs as much as
        ``Head.head_read_rows`` rows of products, so the states no walk reaches are worth
        computing when there are fewer of them than the reads saved (per-coalition drafts
        and look-up chains are mostly single paths)."""
        states = list(hidden.values())
        spare = sum(int(h.shape[0]) for h in states) - len(states)
        if spare <= self.head.head_read_rows * (levels - 1):
            ahead = dict(zip(hidden, self.argmax(states), strict=True))
            return lambda going, at: [ahead[c][i] for c, i in zip(going, at, strict=True)]

        def level(going: list[int], at: list[int]) -> list[int]:
            picked = [hidden[c][i : i + 1] for c, i in zip(going, at, strict=True)]
            return [token for [token] in self.argmax(picked)]

        return level

    def argmax(self, hidden: list[torch.Tensor]) -> list[list[int]]:
        """Greedy next tokens after the given hidden states; the output head runs on those only."""
        tokens = self.head.greedy_tokens(torch.cat(hidden))
        out, at = [], 0
        for states in hidden:
            out.append(tokens[at : at + len(states)])
            at += len(states)
        return out
