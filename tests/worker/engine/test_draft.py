"""The answer prefix tree and the greedy walk through it."""

from __future__ import annotations

import numpy as np

from worker.engine.speculation.acceptance import accept, greedy_walk
from worker.engine.speculation.draft import AnswerBook, DraftTree

EOS = {1}


def until(limit: int):
    """The EOS-or-limit stop the engine passes when the newline stop is off."""
    return lambda tokens: len(tokens) >= limit or tokens[-1] in EOS


def tree_of(*answers: tuple[int, ...], cap: int = 64) -> DraftTree:
    tree = DraftTree(max_nodes=cap)
    for answer in answers:
        tree.add(answer)
    return tree


def test_shared_prefixes_share_nodes():
    tree = tree_of((5, 6, 1), (5, 7, 1))
    assert tree.tokens == [5, 6, 1, 7, 1]
    assert tree.parents == [-1, 0, 1, 0, 3]
    assert tree.depths == [1, 2, 3, 2, 3]


def test_ancestry_is_each_nodes_path():
    anc = tree_of((5, 6), (5, 7)).ancestry()
    expected = np.array([[1, 0, 0], [1, 1, 0], [1, 0, 1]], dtype=bool)
    np.testing.assert_array_equal(anc, expected)


def test_the_cap_stops_growth():
    tree = tree_of((2, 3, 4, 5), (6, 7), cap=3)
    assert tree.tokens == [2, 3, 4]


def test_walk_accepts_a_known_answer_to_its_eos():
    tree = tree_of((5, 6, 1), (5, 7, 1))
    # argmax after the prompt, then after nodes 0..4
    walk = greedy_walk(tree, [5, 7, 0, 0, 1], until(8))
    assert walk.tokens == [5, 7, 1]
    assert (walk.proposed, walk.accepted, walk.last_node) == (3, 3, 3)


def test_walk_stops_where_greedy_leaves_the_tree():
    tree = tree_of((5, 6, 1))
    walk = greedy_walk(tree, [5, 9, 0, 0], until(8))
    assert walk.tokens == [5, 9]
    assert (walk.proposed, walk.accepted, walk.last_node) == (2, 1, 0)


def test_walk_respects_the_length_limit():
    tree = tree_of((5, 6, 8, 1))
    walk = greedy_walk(tree, [5, 6, 8, 1, 0], until(2))
    assert walk.tokens == [5, 6]


def test_empty_tree_gives_the_first_greedy_token():
    walk = greedy_walk(DraftTree(), [42], until(4))
    assert walk.tokens == [42]
    assert (walk.proposed, walk.accepted, walk.last_node) == (0, 0, -1)


def test_walk_stops_where_the_stop_rule_says_the_answer_ended():
    """A stored answer ended by a newline token (13) is accepted up to that token, not past."""
    tree = tree_of((5, 13), (5, 6, 1))
    walk = greedy_walk(tree, [5, 13, 0, 0, 0], lambda tokens: tokens[-1] in (1, 13))
    assert walk.tokens == [5, 13]
    assert (walk.proposed, walk.accepted, walk.last_node) == (2, 2, 0)


def test_the_nearest_coalitions_answers_are_drafted_first():
    book = AnswerBook()
    game = ("doc", 0, 1)
    book.record(game, np.array([1, 1, 1, 1], bool), (5, 1))
    book.record(game, np.array([0, 0, 0, 1], bool), (6, 1))
    book.record(game, np.array([0, 0, 1, 1], bool), (6, 1))
    # two votes for (6, 1), but (5, 1) came from a coalition one unit away
    assert book.ranked(game, np.array([1, 1, 1, 0], bool)) == [(5, 1), (6, 1)]
    assert book.ranked(game, np.array([0, 0, 0, 0], bool)) == [(6, 1), (5, 1)]
    # another unit list (or none): by frequency
    assert book.ranked(("other",), np.array([1], bool)) == [(6, 1), (5, 1)]
    assert book.ranked(game, None) == [(6, 1), (5, 1)]


def test_a_coalitions_draft_holds_its_likeliest_answers_within_the_cap():
    book = AnswerBook()
    game = ("g",)
    for mask, answer in (([1, 0], (2, 3, 4, 1)), ([0, 1], (7, 8, 1)), ([1, 1], (2, 9, 1))):
        book.record(game, np.array(mask, bool), answer)
    draft = book.draft(game, np.array([0, 1], bool), max_nodes=5)
    assert draft.tokens[:3] == [7, 8, 1]  # the nearest coalition's answer first
    assert len(draft) == 5  # then as much of the next as fits
    assert book.nodes(5) == 5
    assert book.nodes(100) == 4 + 3 + 3
    assert len(book.draft(game, None, max_nodes=100)) == 9  # (2, 3, 4, 1) and (2, 9, 1) share 2


def test_a_draft_stops_once_its_answers_hold_most_of_the_votes():
    book = AnswerBook()
    game = ("g",)
    for _ in range(30):
        book.record(game, np.array([1, 1, 0], bool), (5, 6, 1))
    book.record(game, np.array([0, 0, 1], bool), (7, 1))
    near = book.draft(game, np.array([1, 1, 0], bool), max_nodes=64)
    assert near.tokens == [5, 6, 1]  # 30 votes against 1/8: the one answer is the draft
    far = book.draft(game, np.array([0, 0, 1], bool), max_nodes=64)
    assert far.tokens == [5, 6, 1, 7, 1]  # 3.75 against 1: both
    assert book.draft(game, np.array([1, 1, 0], bool), 64, mass=1.0).tokens == far.tokens


def test_a_decoders_draft_map_continues_the_likeliest_answer_for_the_coalition():
    """The seq2seq decoder drafts from the same book: each prefix of the likeliest answers ->
    the rest of the likeliest one with that prefix, votes by distance as for a tree."""
    book = AnswerBook()
    game = ("g",)
    for mask, answer in (([1, 0, 0], (2, 3, 1)), ([1, 1, 0], (2, 3, 1)), ([0, 0, 1], (2, 9, 1))):
        book.record(game, np.array(mask, bool), answer)
    near = book.continuations(game, np.array([0, 1, 1], bool), max_nodes=64)
    assert near[()] == (2, 9, 1)
    assert near[(2,)] == (9, 1)
    assert near[(2, 3)] == (1,)
    frequent = book.continuations(game, None, max_nodes=64)
    assert frequent[()] == (2, 3, 1)
    assert frequent[(2,)] == (3, 1)
    assert (2, 9) in frequent
    assert book.continuations(game, None, max_nodes=2) == {
        (): (2, 3, 1),
        (2,): (3, 1),
        (2, 3): (1,),
    }


def test_a_path_draft_is_walked_like_a_tree_and_its_last_token_counts():
    """``accept`` (a decoder's continuation or a look-up guess) is the tree walk over a path:
    a confirmed token that ends the answer counts as accepted, the answer so far is kept."""
    out = [4]
    walk = accept(out, [5, 1], [5, 1, 0], until(10))
    assert out == [4, 5, 1]
    assert (walk.proposed, walk.accepted) == (2, 2)
    out = [4]
    walk = accept(out, [5, 6, 7], [5, 8, 0, 0], until(10))
    assert out == [4, 5, 8]
    assert (walk.proposed, walk.accepted) == (2, 1)
    walk = accept([], [], [3], until(10))
    assert walk.tokens == [3]
    assert (walk.proposed, walk.accepted) == (0, 0)
