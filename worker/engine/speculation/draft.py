"""The speculative draft: a prefix tree of the answers already generated in a job.

Shapley coalitions of one job mostly produce one of a handful of answers, so the answers
seen so far are an excellent draft: the engine verifies the whole tree in the same
forward pass as the prompt and only decodes further where greedy decoding leaves it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from worker.shapley.units import Unit


@dataclass
class DraftTree:
    """Nodes in insertion order; node ``i`` holds ``tokens[i]`` and has parent ``parents[i]``
    (-1 = child of the prompt's last token). Capped at ``max_nodes`` so the verification
    pass stays cheap."""

    max_nodes: int = 64
    tokens: list[int] = field(default_factory=list)
    parents: list[int] = field(default_factory=list)
    depths: list[int] = field(default_factory=list)
    _children: dict[tuple[int, int], int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.tokens)

    def child(self, node: int, token: int) -> int | None:
        """The child of ``node`` (-1 = root) carrying ``token``, if the tree has one."""
        return self._children.get((node, token))

    @classmethod
    def path(cls, tokens: Sequence[int]) -> DraftTree:
        """A draft of one continuation (a chain of nodes)."""
        tree = cls(max_nodes=len(tokens))
        tree.add(tokens)
        return tree

    def has_children(self, node: int) -> bool:
        return any(p == node for p in self.parents)

    def add(self, answer: Sequence[int]) -> None:
        """Insert an answer's tokens (with the EOS or newline token ending it), within the cap."""
        node = -1
        for token in answer:
            nxt = self.child(node, token)
            if nxt is None:
                if len(self.tokens) >= self.max_nodes:
                    return
                nxt = len(self.tokens)
                self.tokens.append(int(token))
                self.parents.append(node)
                self.depths.append(1 if node < 0 else self.depths[node] + 1)
                self._children[(node, int(token))] = nxt
            node = nxt

    def ancestry(self) -> npt.NDArray[np.bool_]:
        """``out[q, k]``: node ``k`` is ``q`` or an ancestor of ``q`` (the tree attention mask)."""
        n = len(self.tokens)
        out = np.eye(n, dtype=bool)
        for q in range(n):
            parent = self.parents[q]
            if parent >= 0:
                out[q] |= out[parent]
        return out


def game_of(units: Sequence[Unit]) -> tuple[tuple[int, int, int], ...]:
    """Which unit list a coalition belongs to (draft votes count within one game)."""
    return tuple((u.document, u.start, u.end) for u in units)


DRAFT_MASS = 0.95  # a coalition's draft holds the answers with this share of its votes
# Fast mode computes about 20 tail tokens per coalition, so a draft's alternatives are a
# large share of its work: measured on 10 NQ documents (128 coalitions), 0.8 instead of
# 0.95 cut SmolLM2's tokens per coalition from 52 to 44 and its time by 12% (Gemma 3: 3%)
# for 0.02 more passes per coalition.
FAST_DRAFT_MASS = 0.8


@dataclass
class AnswerBook:
    """The job's answers, and which coalitions gave them, to draft for each coalition.

    One shared tree of every answer grows with the job and is copied below every prompt,
    so its cost per coalition grows too (64 nodes at most: a sixth of a ten-document
    exact coalition, more than half of a fast-mode one). Coalitions that differ in few
    units mostly give the same answer, so the answers of the nearest coalitions already
    decoded (votes weighted ``2 ** -distance``, distance in units of the same game) make a
    small tree that holds the answer about as often as the whole one.
    """

    answers: list[tuple[int, ...]] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)
    _index: dict[tuple[int, ...], int] = field(default_factory=dict)
    _games: dict[object, tuple[list[npt.NDArray[np.bool_]], list[int]]] = field(
        default_factory=dict
    )

    def record(
        self, game: object, mask: npt.NDArray[np.bool_] | None, answer: tuple[int, ...]
    ) -> None:
        """A coalition of ``game`` (its unit list; ``None`` mask: no coalition to vote
        with) gave ``answer`` (ids with the token that ended it)."""
        index = self._index.setdefault(answer, len(self.answers))
        if index == len(self.answers):
            self.answers.append(answer)
            self.counts.append(0)
        self.counts[index] += 1
        if mask is not None:
            masks, picks = self._games.setdefault(game, ([], []))
            masks.append(np.asarray(mask, dtype=bool))
            picks.append(index)

    def ranked(self, game: object, mask: npt.NDArray[np.bool_] | None) -> list[tuple[int, ...]]:
        """Every answer, the likeliest for this coalition first (then the most frequent)."""
        return [self.answers[i] for i, _ in self._scored(game, mask)]

    def draft(
        self,
        game: object,
        mask: npt.NDArray[np.bool_] | None,
        max_nodes: int,
        mass: float = DRAFT_MASS,
    ) -> DraftTree:
        """A tree of the likeliest answers for this coalition: in order of their votes until
        they hold ``mass`` of the votes (at least one answer), at most ``max_nodes`` nodes.
        Where the nearest coalitions agree the draft is one answer; where they do not, the
        tree covers the alternatives."""
        tree = DraftTree(max_nodes=max_nodes)
        scored = self._scored(game, mask)
        total, held = sum(score for _, score in scored), 0.0
        for i, score in scored:
            if len(tree) >= max_nodes or (len(tree) and held >= mass * total):
                break
            tree.add(self.answers[i])
            held += score
        return tree

    def continuations(
        self, game: object, mask: npt.NDArray[np.bool_] | None, max_nodes: int
    ) -> dict[tuple[int, ...], tuple[int, ...]]:
        """A draft for a decoder that extends one answer at a time: every prefix of the
        likeliest answers for this coalition -> the rest of the likeliest answer with that
        prefix (answers taken in order of their votes while the map has fewer than
        ``max_nodes`` prefixes)."""
        out: dict[tuple[int, ...], tuple[int, ...]] = {}
        for i, _ in self._scored(game, mask):
            if len(out) >= max_nodes:
                break
            answer = self.answers[i]
            for k in range(len(answer)):
                out.setdefault(answer[:k], answer[k:])
        return out

    def _scored(self, game: object, mask: npt.NDArray[np.bool_] | None) -> list[tuple[int, float]]:
        """(answer index, votes), most votes first: each coalition of the same unit list
        votes ``2 ** -distance`` for its answer; every answer seen gets a sliver by frequency
        (which alone orders answers for a coalition of another unit list)."""
        score = np.asarray(self.counts, dtype=np.float64) * 1e-6
        if mask is not None and game in self._games:
            masks, picks = self._games[game]
            distance = (np.stack(masks) != np.asarray(mask, dtype=bool)).sum(axis=1)
            score += np.bincount(picks, weights=0.5**distance, minlength=len(self.answers))
        order = sorted(range(len(self.answers)), key=lambda i: (-score[i], i))
        return [(i, float(score[i])) for i in order]

    def nodes(self, max_nodes: int) -> int:
        """Nodes a draft can have (what a batch must leave room for per coalition)."""
        return min(max_nodes, sum(len(a) for a in self.answers))
