"""The most units each hierarchy level of a request can reach, whatever the scores.

Which units a level refines depends on the previous level's scores, so the gateway cannot
know a job's unit counts at submit; it can know their worst case under the refinement
rule (``hierarchy.matters``): ``top_k`` splits at most ``k`` units, ``threshold`` may split
all of them. A request whose worst case is over ``max_units_per_level`` is refused at
submit (422) instead of failing after its first level has run. Counting sentences runs
pysbd (about 25 us a character), so a cheap bound is tried first and the exact count only
when the cheap one is over the cap: for ordinary documents the check costs microseconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from worker.shapley.segment import WORD, sentence_spans
from worker.shapley.units import Document

LEVELS = ("document", "sentence", "word")


@dataclass(frozen=True)
class Overflow:
    """The first level whose worst case is over the cap, and that worst case."""

    level: str
    units: int


def cheap_bound(text: str) -> int:
    """At least the number of sentences of ``text``: words plus punctuation characters.

    Every sentence holds a non-space character, and a boundary inside a whitespace-free run
    falls after a punctuation character (property-tested against :func:`sentence_spans`
    in tests/worker/shapley/test_shapley_unit_bounds.py). Words summed over the sentences are at
    most words + sentences (a run cut by a boundary counts once per piece).
    """
    return len(WORD.findall(text)) + _marks(text)


def _marks(text: str) -> int:
    return sum(1 for ch in text if not (ch.isalnum() or ch.isspace()))


def worst_case(
    docs: Sequence[Document], levels: Sequence[str], rule: str, k: int
) -> dict[str, int]:
    """The most units each requested level can have: exact for the document and sentence
    levels, an upper bound for ``top_k`` at the word level (its k longest sentences taken
    from every document, not only from the ones the sentence level refined)."""
    sentences = [
        [len(WORD.findall(doc.text[a:b])) for a, b in sentence_spans(doc.text)] for doc in docs
    ]
    n = len(docs)
    out = {"document": n}
    per_doc = sorted((len(s) for s in sentences), reverse=True)
    if rule == "threshold":
        out["sentence"] = sum(per_doc)
        out["word"] = sum(sum(s) for s in sentences)
    else:
        top = min(k, n)
        out["sentence"] = n - top + sum(per_doc[:top])
        longest = sorted((w for s in sentences for w in s), reverse=True)
        split = min(k, out["sentence"])
        out["word"] = out["sentence"] - split + sum(longest[:split])
    return {level: out[level] for level in levels}


def first_overflow(
    docs: Sequence[Document], levels: Sequence[str], rule: str, k: int, cap: int
) -> Overflow | None:
    """The first requested level whose worst case is over ``cap``, or None."""
    if len(docs) > cap:
        return Overflow("document", len(docs))
    deeper = [level for level in levels if level != "document"]
    if not deeper:
        return None
    # sentence level <= n + sentences; word level <= n + sentences + (words + sentences)
    per_doc = [len(WORD.findall(doc.text)) for doc in docs]
    words = sum(per_doc)
    sentences = words + sum(_marks(doc.text) for doc in docs)  # cheap_bound, summed
    bound = len(docs) + sentences + (words + sentences if "word" in deeper else 0)
    if bound <= cap:
        return None
    counts = worst_case(docs, deeper, rule, k)
    return next((Overflow(lv, counts[lv]) for lv in deeper if counts[lv] > cap), None)
