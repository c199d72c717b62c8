"""Look-up drafts: the tokens that followed the last generated n-gram elsewhere."""

from __future__ import annotations

from worker.engine.speculation.lookup import corpus_of, follow


def test_the_longest_matching_suffix_wins():
    corpus = corpus_of([[1, 2, 3, 4, 5, 9, 3, 7, 7]])
    # "2 3" occurs once, followed by 4 5; the single "3" alone would point at 7 7
    assert follow(corpus, [8, 2, 3], length=2) == [4, 5]
    assert follow(corpus, [8, 6, 3], length=2) == [7, 7]


def test_the_latest_text_is_preferred_and_separators_end_a_draft():
    corpus = corpus_of([[1, 2, 3, 4], [1, 2, 9]])
    assert follow(corpus, [1, 2], length=5) == [9]  # later text first, cut at its end


def test_no_match_or_no_room_gives_nothing():
    corpus = corpus_of([[1, 2, 3]])
    assert follow(corpus, [4], length=3) == []
    assert follow(corpus, [1], length=0) == []
    assert follow(corpus, [], length=3) == []
    assert follow(corpus, [3], length=3) == []  # the last token is followed by nothing
