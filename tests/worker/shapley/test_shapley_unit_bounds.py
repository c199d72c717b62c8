"""The worst-case unit counts the gateway checks at submit (``unit_bounds``)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from worker.shapley import segment, unit_bounds
from worker.shapley.units import Document


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["ab", "Z", " ", ".", "!", "?", "。", "！", "؟", "\n", "Dr.",
                                 "e.g.", "3.5", "猫", "\"", "”", ")", ",", "…", "U.S. "]),
                max_size=40).map("".join))  # fmt: skip
def test_the_cheap_bound_is_never_below_the_sentences_and_their_words(text: str) -> None:
    spans = segment.sentence_spans(text)
    bound = unit_bounds.cheap_bound(text)
    assert len(spans) <= bound
    words = sum(len(segment.WORD.findall(text[a:b])) for a, b in spans)
    assert words <= len(segment.WORD.findall(text)) + len(spans)


DOCS = [
    Document("One. Two words here. Three."),
    Document("A single sentence with seven words."),
    Document("Short. Also short. Tiny. Last one here."),
    Document("x"),
]


def brute_force(docs: list[Document], levels: list[str], rule: str, k: int) -> dict[str, int]:
    """Every refinement the rule allows (any scores), the largest unit count per level."""
    n, best = len(docs), {"document": len(docs), "sentence": 0, "word": 0}
    limit = n if rule == "threshold" else k
    for size in range(limit + 1):
        for chosen in itertools.combinations(range(n), size):
            whole = segment.document_units(docs)
            units = [
                u
                for i in range(n)
                for u in (segment.sentence_units(docs, i) if i in chosen else [whole[i]])
            ]
            best["sentence"] = max(best["sentence"], len(units))
            sentences = [j for j, u in enumerate(units) if u.level == "sentence"]
            top = len(sentences) if rule == "threshold" else min(k, len(sentences))
            for split in itertools.combinations(sentences, top):
                words = sum(len(segment.word_units(docs, units[j])) - 1 for j in split)
                best["word"] = max(best["word"], len(units) + words)
    return {level: best[level] for level in levels}


@pytest.mark.parametrize(("rule", "k"), [("top_k", 1), ("top_k", 2), ("threshold", 2)])
def test_the_worst_case_is_the_largest_count_any_refinement_reaches(rule: str, k: int) -> None:
    """Exact at the sentence level (and for threshold); never below it for top_k words."""
    levels = ["document", "sentence", "word"]
    bound = unit_bounds.worst_case(DOCS, levels, rule, k)
    exact = brute_force(DOCS, levels, rule, k)
    assert {lv: bound[lv] for lv in levels[:2]} == {lv: exact[lv] for lv in levels[:2]}
    assert bound["word"] >= exact["word"]
    if rule == "threshold":
        assert bound["word"] == exact["word"]


def test_a_long_document_of_short_sentences_overflows_at_the_sentence_level() -> None:
    docs = [Document("The cat sat. " * 1_500), Document("Paris is in France.")]
    over = unit_bounds.first_overflow(docs, ["document", "sentence"], "top_k", 2, 1_000)
    assert over == unit_bounds.Overflow("sentence", 1_501)  # and the other document whole
    assert unit_bounds.first_overflow(docs, ["document"], "top_k", 2, 1_000) is None
    assert unit_bounds.first_overflow(docs, ["document", "sentence"], "top_k", 2, 2_000) is None


def test_ordinary_documents_never_reach_the_sentence_splitter(monkeypatch) -> None:
    """The gateway pays pysbd only where the cheap bound is over the cap."""

    def refuse(_: str) -> list[tuple[int, int]]:
        raise AssertionError("sentence_spans ran")

    monkeypatch.setattr(unit_bounds, "sentence_spans", refuse)
    docs = [Document("Paris is the capital of France. It is large. " * 5)] * 10  # 450 words
    assert unit_bounds.first_overflow(docs, ["document", "sentence"], "top_k", 2, 1_000) is None
    assert (
        unit_bounds.first_overflow(docs, ["document", "sentence", "word"], "top_k", 2, 2_000)
        is None
    )
