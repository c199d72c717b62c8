"""The one acceptance loop of speculative decoding, for drafts of either shape.

A draft is a prefix tree (``DraftTree``): the job's likeliest answers below a prompt, or a
single path (an answer's continuation, a look-up guess). Greedy decoding walks it: each
greedy token moves to the child that carries it, and the walk ends where greedy leaves the
draft or the answer is complete. Both engine families, and both kinds of draft, walk with
``step``, so a token counts as proposed and accepted the same way everywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from worker.engine.speculation.draft import DraftTree

Done = Callable[[list[int]], bool]


@dataclass
class Walk:
    """A greedy path through a draft: the answer's tokens (those generated before the draft
    first, where a decoder resumes an answer), the draft node reached (-1: none yet), and
    how many draft tokens were proposed and accepted on the way."""

    tokens: list[int]
    last_node: int = -1
    proposed: int = 0
    accepted: int = 0


def step(walk: Walk, tree: DraftTree, token: int, done: Done) -> bool:
    """One step: ``token`` is greedy after ``walk.last_node`` (-1: the last token before the
    draft). Returns whether the walk goes on (then from the child it moved to), so that a
    caller can compute the next greedy token only for walks that need one. A step counts as
    proposed when the current node has children and as accepted when greedy takes one of
    them, also when that token completes the answer."""
    walk.tokens.append(token)
    node = walk.last_node
    child = tree.child(node, token)
    if tree.has_children(node):
        walk.proposed += 1
        walk.accepted += child is not None
    if child is None or done(walk.tokens):
        return False
    walk.last_node = child
    return True


def greedy_walk(
    tree: DraftTree, argmax: Sequence[int], done: Done, tokens: list[int] | None = None
) -> Walk:
    """Follow greedy choices through the tree when every greedy token is known up front:
    ``argmax[0]`` is the greedy token before the draft, ``argmax[1 + i]`` the one after node
    ``i``. ``tokens``: the answer so far, extended in place (default: a new answer)."""
    walk = Walk([] if tokens is None else tokens)
    while step(walk, tree, int(argmax[walk.last_node + 1]), done):
        pass
    return walk


def accept(out: list[int], draft: Sequence[int], greedy: Sequence[int], done: Done) -> Walk:
    """Append greedy tokens to ``out`` while they confirm the path ``draft`` (``greedy[i]``:
    the greedy token after the draft's first ``i`` tokens); the walk says how many draft
    tokens were taken (``accepted``)."""
    return greedy_walk(DraftTree.path(draft), greedy, done, out)
