"""The packed prefix tree: shared nodes, paths, and who sees what."""

from __future__ import annotations

import numpy as np

from worker.engine.batching.packing import PackedTree, shared_prefix, split_rows


def test_shared_leading_tokens_are_one_node_per_branch():
    tree = PackedTree(reach=4)
    branch = tree.branch(2, key=2)
    a = tree.add_path(branch, -1, [7, 8, 9], start=2, share=True)
    b = tree.add_path(tree.branch(2, key=2), -1, [7, 8, 5], start=2, share=True)
    assert a[:2] == b[:2]
    assert a[2] != b[2]
    assert len(tree) == 4
    other = tree.add_path(tree.branch(3, key=3), -1, [7], start=3, share=True)
    assert other[0] not in a  # another reuse length is another branch: nothing shared
    assert tree.positions[a[2]] == 4
    assert tree.positions[other[0]] == 3


def test_unshared_paths_duplicate_nodes():
    tree = PackedTree(reach=0)
    a = tree.add_path(tree.branch(0), -1, [1, 2], 0, share=False)
    b = tree.add_path(tree.branch(0), -1, [1, 2], 0, share=False)
    assert set(a).isdisjoint(b)
    assert len(tree) == 4


def test_a_node_sees_its_branch_slots_and_its_path_only():
    tree = PackedTree(reach=3)
    first = tree.add_path(tree.branch(2, key=2), -1, [10, 11], start=2, share=True)
    draft = tree.add(tree.branches[first[-1]], first[-1], 12, 4, share=False)
    sibling = tree.add(tree.branches[first[-1]], first[-1], 13, 4, share=False)
    seen = tree.seen(range(len(tree)), window=None)
    assert seen.shape == (4, 3 + 4)
    # full-context slots: the branch reuses the first two of three
    assert seen[:, :3].tolist() == [[True, True, False]] * 4
    keys = seen[:, 3:]
    assert keys[first[0]].tolist() == [True, False, False, False]
    assert keys[draft].tolist() == [True, True, True, False]
    assert keys[sibling].tolist() == [True, True, False, True]  # not the rejected draft


def test_flagged_branches_and_the_sliding_window():
    tree = PackedTree(reach=4)
    branch = tree.branch(np.array([True, False, True, True]), key=b"x")
    node = tree.add(branch, -1, 5, position=4, share=True)
    assert tree.seen(range(1), None)[0].tolist() == [True, False, True, True, True]
    # window 2: a query at position 4 sees positions 3 and 4 only
    assert tree.seen(range(1), 2)[0].tolist() == [False, False, False, True, True]
    assert tree.computed == 0
    assert tree.pending() == range(0, 1)
    assert node == 0


def test_shared_prefix():
    assert shared_prefix([1, 2, 3], [1, 2, 4]) == 2
    assert shared_prefix([1, 2], [1, 2, 3]) == 2
    assert shared_prefix([], [1]) == 0
    assert shared_prefix([5], [1]) == 0


def test_rows_keep_families_together_and_balance_widths():
    # two families (sharing leading tokens) of 2 and one loner, on one branch
    prompts = [[1, 2, 3, 4], [1, 2, 3, 5], [6, 7, 8, 9], [6, 7, 8, 0], [4, 4]]
    branches = [0, 0, 0, 0, 0]
    cheap = split_rows(branches, prompts, extra=0, reach=100, key_cost=0.0)
    assert cheap == [[0, 1, 2, 3, 4]]  # attention free: one row shares the most, pads nothing
    dear = split_rows(branches, prompts, extra=0, reach=0, key_cost=1.0)
    assert sorted(map(sorted, dear)) == [[0, 1], [2, 3], [4]]  # one family per row
    middle = split_rows(branches, prompts, extra=0, reach=100, key_cost=0.01)
    assert all({0, 1} <= set(r) or not {0, 1} & set(r) for r in middle)


def test_with_key_blocks_one_row_holds_every_family_of_a_branch():
    """Block-sparse attention reads only a query's own keys, so rows do not need to keep
    families apart: more rows would only pad."""
    prompts = [[1, 2, 3, 4], [1, 2, 3, 5], [6, 7, 8, 9], [6, 7, 8, 0], [4, 4]]
    rows = split_rows([0] * 5, prompts, extra=0, reach=0, key_cost=1.0, blocks=True)
    assert rows == [[0, 1, 2, 3, 4]]


def test_rows_never_share_across_branches():
    rows = split_rows([0, 1], [[1, 2], [1, 2]], extra=3, reach=10, key_cost=1.0)
    assert sorted(map(sorted, rows)) == [[0], [1]]


def test_padding_nodes_see_only_themselves():
    tree = PackedTree(reach=2)
    tree.add_path(tree.branch(2, key=2), -1, [5, 6], start=2, share=True)
    tree.pad_to(4, token=0)
    assert len(tree) == 4
    seen = tree.seen(range(4), None)
    assert seen[2].tolist() == [False, False, False, False, True, False]
    assert seen[3].tolist() == [False, False, False, False, False, True]
    assert seen[1].tolist() == [True, True, True, True, False, False]


def test_moving_slots_favours_fewer_rows_when_all_reuse_a_long_prefix():
    """Fast mode: every coalition reuses the same 1,400 full-context slots and computes a
    short tail; one row per coalition would copy and read them eight times."""
    prompts = [[i, 1, 2, 3] for i in range(8)]
    branches = list(range(8))
    spread = split_rows(branches, prompts, extra=2, reach=1400, key_cost=3e-4)
    assert len(spread) == 8  # attention and padding alone favour a row each
    packed = split_rows(branches, prompts, extra=2, reach=1400, key_cost=3e-4, slot_cost=0.03)
    assert len(packed) == 1


def test_reused_slots_sit_at_their_stored_positions():
    """A row's reused region holds stored slots in any order; the sliding window counts
    by their positions, not their index in the row."""
    tree = PackedTree(reach=3, reach_positions=np.array([0, 5, 6]))
    branch = tree.branch(np.array([True, True, True]))
    tree.add_path(branch, -1, [9], start=7, share=False)
    assert tree.seen(range(1), window=2)[0].tolist() == [False, False, True, True]
    assert tree.seen(range(1), window=None)[0].tolist() == [True, True, True, True]
