"""Every MIRACL language segments into sentences and words whose offsets highlight exactly:
``document.text[start:end] == unit.text``, in order, without overlap, covering the text."""

from pathlib import Path

import pytest

from worker.evaluation.data import Example, load_examples
from worker.shapley import segment

MIRACL = Path(__file__).parent / "data" / "miracl-7langs-14.jsonl.gz"
EXAMPLES = load_examples(MIRACL)
LANGS = ["en", "de", "es", "zh", "ja", "ar", "sw"]


def _by_lang(lang: str) -> list[Example]:
    return [e for e in EXAMPLES if e.lang == lang]


def _check_units(text: str, units: list, start: int, end: int) -> None:
    cursor = start
    for u in units:
        assert text[u.start : u.end] == u.text
        assert cursor <= u.start < u.end <= end
        assert text[cursor : u.start].strip() == ""  # nothing but space between units
        cursor = u.end
    assert text[cursor:end].strip() == ""


@pytest.mark.parametrize("lang", LANGS)
def test_sentences_and_words_round_trip(lang: str) -> None:
    examples = _by_lang(lang)
    assert len(examples) == 2
    for example in examples:
        docs = list(example.documents)
        for i, doc in enumerate(docs):
            sentences = segment.sentence_units(docs, i)
            assert sentences, f"{lang} doc {i} has no sentence"
            _check_units(doc.text, sentences, 0, len(doc.text))
            for sentence in sentences:
                words = segment.word_units(docs, sentence)
                _check_units(doc.text, words, sentence.start, sentence.end)


@pytest.mark.parametrize(
    ("lang", "min_sentences"), [("zh", 2), ("ja", 2), ("ar", 2), ("en", 2), ("sw", 2)]
)
def test_scripts_split_into_several_sentences(lang: str, min_sentences: int) -> None:
    """Chinese/Japanese full stops and Arabic question marks end sentences too: the longest
    passage of each language has more than one sentence."""
    docs = [d for e in _by_lang(lang) for d in e.documents]
    longest = max(range(len(docs)), key=lambda i: len(docs[i].text))
    assert len(segment.sentence_units(docs, longest)) >= min_sentences


def test_cjk_words_are_single_characters() -> None:
    docs = list(_by_lang("ja")[0].documents)
    sentence = segment.sentence_units(docs, 1)[0]
    words = segment.word_units(docs, sentence)
    assert sentence.text.startswith("ヒンドゥー教")
    assert [w.text for w in words[:3]] == ["ヒ", "ン", "ド"]
