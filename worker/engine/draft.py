"""The speculative draft: a prefix tree of the answers already generated in a job.

Shapley coalitions of one job mostly produce one of a handful of answers, so the answers
seen so far are an excellent draft: the engine verifies the whole tree in the same
forward pass as the prompt and only decodes further where greedy decoding leaves it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt


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


@dataclass
class Walk:
    """The greedy path through the tree: accepted tokens, the next token, and counters."""

    tokens: list[int]
    last_node: int
    proposed: int
    accepted: int


def greedy_walk(tree: DraftTree, argmax: Sequence[int], done: Callable[[list[int]], bool]) -> Walk:
    """Follow greedy choices through the tree. ``argmax[0]`` is the greedy token after the
    prompt, ``argmax[1 + i]`` the one after node ``i``. Stops where ``done`` says the answer
    is complete (EOS, the token limit, the newline stop: the tree holds answers ended the
    same way) or where greedy leaves the tree; a step counts as proposed when the current
    node has children and as accepted when greedy takes one of them."""
    tokens: list[int] = []
    node, proposed, accepted = -1, 0, 0
    while True:
        token = int(argmax[node + 1])
        tokens.append(token)
        nxt = tree.child(node, token)
        if tree.has_children(node):
            proposed += 1
            accepted += nxt is not None
        if nxt is None or done(tokens):
            break
        node = nxt
    return Walk(tokens, node, proposed, accepted)
