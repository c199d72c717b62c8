"""Documents -> sentences -> words, every unit located by exact character offsets.

Offsets always round-trip: ``documents[u.document].text[u.start:u.end] == u.text``.
Sentences come from pysbd's rule-based English segmenter (it also splits on the CJK
full stop), then any piece still holding a CJK or Arabic terminator (``。！？؟``) is
split after it; sentence text is located in the original string rather than trusted
from the library, so unicode, odd whitespace and pysbd's cleaning never shift offsets.
Words are whitespace-separated runs; inside a run, every CJK ideograph or kana is a
word of its own (those scripts write no spaces, and a character is the only boundary
that needs no dictionary), while other letters, digits and attached punctuation stay
together.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import numpy.typing as npt
import pysbd

from worker.shapley.errors import ShapleyInputError
from worker.shapley.units import Document, Unit

_TERMINATOR_SPLIT = re.compile(r"[。！？]+[」』）)\"'”’]*|[!?؟]+(?=\s|$)|[.](?=\s|$)")
_CJK = (
    r"\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
    r"\U00020000-\U0002fa1f\u3005\u3006\u3007"
)
WORD = re.compile(rf"[{_CJK}]|[^\s{_CJK}]+")


def check_documents(docs: Sequence[Document]) -> None:
    """Raise :class:`ShapleyInputError` unless there is at least one non-blank document."""
    if not docs:
        raise ShapleyInputError("documents must be a non-empty list")
    for i, doc in enumerate(docs):
        if not doc.text.strip():
            raise ShapleyInputError(f"document {i} has blank text; every document needs text")


def document_units(docs: Sequence[Document]) -> list[Unit]:
    """One unit per document, spanning its whole text."""
    check_documents(docs)
    return [Unit("document", i, 0, len(d.text), d.text) for i, d in enumerate(docs)]


def sentence_units(docs: Sequence[Document], i: int) -> list[Unit]:
    """The sentences of document ``i``, stripped of surrounding whitespace, in order."""
    check_documents(docs)
    if not 0 <= i < len(docs):
        raise ShapleyInputError(f"document index {i} out of range 0..{len(docs) - 1}")
    text = docs[i].text
    return [Unit("sentence", i, s, e, text[s:e]) for s, e in sentence_spans(text)]


def word_units(docs: Sequence[Document], unit: Unit) -> list[Unit]:
    """The words inside ``unit`` (see the module docstring for scripts without spaces)."""
    text = docs[unit.document].text
    if text[unit.start : unit.end] != unit.text:
        raise ShapleyInputError(f"unit {unit!r} does not match its document's text")
    return [
        Unit("word", unit.document, unit.start + m.start(), unit.start + m.end(), m.group())
        for m in WORD.finditer(unit.text)
    ]


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each stripped sentence of ``text``; they cover all non-space text."""
    spans = _located_pysbd_spans(text)
    fallback = spans is None
    if spans is None:
        spans = _strip_spans(text, [(0, len(text))])
    refined = [piece for span in spans for piece in _split_terminators(text, span, fallback)]
    return [s for s in refined if s[1] > s[0]]


@lru_cache(maxsize=1)
def _segmenter() -> pysbd.Segmenter:
    return pysbd.Segmenter(language="en", clean=False, char_span=False)


def _located_pysbd_spans(text: str) -> list[tuple[int, int]] | None:
    """pysbd's sentences found in order in ``text``; None if one cannot be found."""
    spans: list[tuple[int, int]] = []
    cursor = 0
    for sentence in _segmenter().segment(text):
        piece = sentence.strip()
        if not piece:
            continue
        start = text.find(piece, cursor)
        if start < 0 or text[cursor:start].strip():
            return None
        spans.append((start, start + len(piece)))
        cursor = start + len(piece)
    if text[cursor:].strip():
        return None
    return spans


def _split_terminators(
    text: str, span: tuple[int, int], everywhere: bool = False
) -> list[tuple[int, int]]:
    """Split after CJK/Arabic terminators pysbd left inside a sentence.

    With ``everywhere`` (pysbd's output could not be located in the text) Latin
    terminators followed by whitespace split too: a plain rule-based fallback.
    """
    start, end = span
    piece = text[start:end]
    if not everywhere and not any(ch in piece for ch in "。！？؟"):
        return [span]
    cuts = [start] + [start + m.end() for m in _TERMINATOR_SPLIT.finditer(piece)] + [end]
    raw = [(a, b) for a, b in zip(cuts, cuts[1:], strict=False) if b > a]
    return _strip_spans(text, raw)


def _strip_spans(text: str, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out = []
    for a, b in spans:
        piece = text[a:b]
        lead = len(piece) - len(piece.lstrip())
        trail = len(piece) - len(piece.rstrip())
        if b - trail > a + lead:
            out.append((a + lead, b - trail))
    return out


def shown_documents(units: Sequence[Unit], mask: npt.NDArray[np.bool_]) -> list[int]:
    """Indices of documents with at least one kept unit, in order."""
    _check_mask(units, mask)
    return sorted({u.document for u, keep in zip(units, mask, strict=True) if keep})


def render(
    docs: Sequence[Document], units: Sequence[Unit], mask: npt.NDArray[np.bool_]
) -> list[tuple[int, Document]]:
    """Remove masking: the shown documents (original index, text with removed units deleted).

    Whitespace is tidied only at the seams a deletion creates (a space before and after
    a removed unit collapses to one), so kept text keeps its own spacing.
    """
    spans = removed_spans(units, mask)
    return [
        (i, Document(_delete_spans(docs[i].text, spans.get(i, [])), docs[i].title))
        for i in shown_documents(units, mask)
    ]


def removed_spans(
    units: Sequence[Unit],
    mask: npt.NDArray[np.bool_],
    docs: Sequence[Document] | None = None,
) -> dict[int, list[tuple[int, int]]]:
    """Pad masking: per document, the sorted (start, end) of removed units.

    A document none of whose units is kept is hidden as a whole: its entry is one span
    over all of its text (``(0, len(text))`` when ``docs`` is given, else from its first
    unit's start to its last unit's end); its title is hidden with it.
    """
    shown = set(shown_documents(units, mask))
    out: dict[int, list[tuple[int, int]]] = {}
    for unit, keep in zip(units, mask, strict=True):
        if not keep:
            out.setdefault(unit.document, []).append((unit.start, unit.end))
    for doc, spans in out.items():
        spans.sort()
        if doc not in shown:
            end = len(docs[doc].text) if docs is not None else spans[-1][1]
            start = 0 if docs is not None else spans[0][0]
            out[doc] = [(start, end)]
    return out


def _delete_spans(text: str, spans: list[tuple[int, int]]) -> str:
    out = ""
    cursor = 0
    for start, end in spans:
        out = _join(out, text[cursor:start])
        cursor = end
    out = _join(out, text[cursor:])
    return out.strip()


def _join(left: str, right: str) -> str:
    if not left or left[-1].isspace():
        return left + right.lstrip()
    return left + right


def _check_mask(units: Sequence[Unit], mask: npt.NDArray[np.bool_]) -> None:
    if np.shape(mask) != (len(units),):
        raise ShapleyInputError(
            f"mask has shape {np.shape(mask)}, expected ({len(units)},) for {len(units)} units"
        )
