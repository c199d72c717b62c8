"""Segmentation: exact offsets (unicode included), sentence and word rules, masking."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from worker.evaluation.paths import shared_data_dir
from worker.shapley import segment
from worker.shapley.errors import ShapleyInputError
from worker.shapley.segment import (
    document_units,
    removed_spans,
    render,
    sentence_units,
    word_units,
)
from worker.shapley.units import Document, Unit

MIRACL = shared_data_dir() / "miracl"


def assert_round_trip(docs: list[Document], units: list[Unit]) -> None:
    for unit in units:
        assert docs[unit.document].text[unit.start : unit.end] == unit.text


def all_units(docs: list[Document]) -> list[Unit]:
    out = document_units(docs)
    for i in range(len(docs)):
        sentences = sentence_units(docs, i)
        out += sentences
        for sentence in sentences:
            out += word_units(docs, sentence)
    return out


def test_english_sentences_and_words() -> None:
    docs = [Document("  Dr. Smith went to Washington.  He met Mrs. Jones there!\nThe end. ")]
    sentences = sentence_units(docs, 0)
    assert [s.text for s in sentences] == [
        "Dr. Smith went to Washington.",
        "He met Mrs. Jones there!",
        "The end.",
    ]
    assert (sentences[0].start, sentences[0].end) == (2, 31)
    assert [w.text for w in word_units(docs, sentences[1])] == [
        "He",
        "met",
        "Mrs.",
        "Jones",
        "there!",
    ]
    assert_round_trip(docs, all_units(docs))


def test_chinese_splits_on_full_stop_and_words_are_characters() -> None:
    text = "南朝時期從420年開始。南朝經歷宋、齐、梁、陈四個朝代！这四朝合称「六朝」。"
    docs = [Document(text)]
    sentences = sentence_units(docs, 0)
    assert [s.text for s in sentences] == [
        "南朝時期從420年開始。",
        "南朝經歷宋、齐、梁、陈四個朝代！",
        "这四朝合称「六朝」。",
    ]
    words = [w.text for w in word_units(docs, sentences[0])]
    assert words == ["南", "朝", "時", "期", "從", "420", "年", "開", "始", "。"]


def test_japanese_and_arabic_terminators() -> None:
    ja = "これは日本語です。本当ですか？はい"
    ar = "هل هذا نص عربي؟ نعم، هذا نص عربي. شكرا"
    docs = [Document(ja), Document(ar)]
    assert [s.text for s in sentence_units(docs, 0)] == [
        "これは日本語です。",
        "本当ですか？",
        "はい",
    ]
    assert [s.text for s in sentence_units(docs, 1)] == [
        "هل هذا نص عربي؟",
        "نعم، هذا نص عربي.",
        "شكرا",
    ]
    assert [w.text for w in word_units(docs, sentence_units(docs, 1)[0])] == [
        "هل",
        "هذا",
        "نص",
        "عربي؟",
    ]


def test_regex_fallback_when_pysbd_output_cannot_be_located(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Garbled:
        def segment(self, text: str) -> list[str]:
            return ["not in the text at all"]

    monkeypatch.setattr(segment, "_segmenter", lambda: Garbled())
    docs = [Document("First one. Second?! Third。第四？ end")]
    assert [s.text for s in sentence_units(docs, 0)] == [
        "First one.",
        "Second?!",
        "Third。",
        "第四？",
        "end",
    ]


def test_emoji_and_combining_marks_round_trip() -> None:
    text = "Cafe\u0301 au lait 👩‍👩‍👧 is good. Naïve re\u0301sume\u0301s 🇫🇷 win!  Done"
    docs = [Document(text)]
    units = all_units(docs)
    assert_round_trip(docs, units)
    assert [s.text for s in sentence_units(docs, 0)][-1] == "Done"
    words = [u.text for u in units if u.level == "word"]
    assert "Cafe\u0301" in words
    assert "👩‍👩‍👧" in words


@pytest.mark.parametrize("lang", ["zh", "ja", "ar", "en", "de"])
def test_real_miracl_passages_round_trip(lang: str) -> None:
    with gzip.open(MIRACL / f"nomiracl-{lang}.jsonl.gz", "rt", encoding="utf-8") as fh:
        rows = [json.loads(next(fh)) for _ in range(3)]
    docs = [Document(d["text"], d["title"]) for r in rows for d in r["documents"]]
    units = all_units(docs)
    assert_round_trip(docs, units)
    for i, doc in enumerate(docs):
        sentences = sentence_units(docs, i)
        covered = "".join(doc.text[s.start : s.end] for s in sentences)
        assert "".join(covered.split()) == "".join(doc.text.split())
        assert all(s.text == s.text.strip() for s in sentences)
    if lang in ("zh", "ja"):
        assert max(len(s.text) for i in range(len(docs)) for s in sentence_units(docs, i)) < 400


@settings(max_examples=40, deadline=None)
@given(st.lists(st.text(min_size=1, max_size=60).filter(str.strip), min_size=1, max_size=3))
def test_offsets_round_trip_on_arbitrary_unicode(texts: list[str]) -> None:
    docs = [Document(t) for t in texts]
    units = all_units(docs)
    assert_round_trip(docs, units)
    for i, doc in enumerate(docs):
        covered = "".join(s.text for s in sentence_units(docs, i))
        assert "".join(covered.split()) == "".join(doc.text.split())


def test_render_deletes_removed_units_and_drops_empty_documents() -> None:
    docs = [Document("One two. Three four.  Five.", "T0"), Document("Other doc.", "T1")]
    units = sentence_units(docs, 0) + document_units(docs)[1:]
    mask = np.array([True, False, True, False])
    assert render(docs, units, mask) == [(0, Document("One two. Five.", "T0"))]
    mask = np.array([False, True, False, True])
    assert render(docs, units, mask) == [
        (0, Document("Three four.", "T0")),
        (1, Document("Other doc.", "T1")),
    ]
    assert render(docs, units, np.zeros(4, dtype=bool)) == []


def test_render_of_words_tidies_only_the_seams() -> None:
    docs = [Document("a  b c d")]
    words = word_units(docs, document_units(docs)[0])
    assert render(docs, words, np.array([True, False, True, True]))[0][1].text == "a  c d"
    assert render(docs, words, np.array([True, True, False, True]))[0][1].text == "a  b d"
    assert render(docs, words, np.array([False, True, True, False]))[0][1].text == "b c"


def test_removed_spans_for_pad_masking() -> None:
    docs = [Document("One two. Three four.  Five.", "T0"), Document(" Other doc. ", "T1")]
    units = sentence_units(docs, 0) + sentence_units(docs, 1)
    mask = np.array([True, False, False, False])
    assert removed_spans(units, mask) == {0: [(9, 20), (22, 27)], 1: [(1, 11)]}
    assert removed_spans(units, mask, docs) == {0: [(9, 20), (22, 27)], 1: [(0, 12)]}
    assert removed_spans(units, np.ones(4, dtype=bool)) == {}


@pytest.mark.parametrize(
    ("docs", "message"),
    [([], "non-empty"), ([Document("ok"), Document("  \n")], "document 1 has blank text")],
)
def test_bad_documents_raise_typed_errors(docs: list[Document], message: str) -> None:
    with pytest.raises(ShapleyInputError, match=message):
        document_units(docs)


def test_bad_index_unit_and_mask_raise_typed_errors() -> None:
    docs = [Document("Hello there. General Kenobi.")]
    with pytest.raises(ShapleyInputError, match="out of range"):
        sentence_units(docs, 1)
    with pytest.raises(ShapleyInputError, match="does not match"):
        word_units(docs, Unit("sentence", 0, 0, 5, "Howdy"))
    with pytest.raises(ShapleyInputError, match="mask has shape"):
        render(docs, document_units(docs), np.array([True, False]))
