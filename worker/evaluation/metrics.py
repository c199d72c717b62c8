"""Per-question metrics: answer accuracy (NQ normalisation), recall@k of relevant passages,
abstention, and how concentrated the attribution mass is.

Pure functions over plain values so the summary and the tests can trust them.
"""

from __future__ import annotations

import math
import re
import string
import unicodedata
from collections.abc import Collection, Sequence
from dataclasses import dataclass

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = set(string.punctuation)

# Phrases a model uses to decline; matched on the normalised answer. English first (the
# prompt is English), then the MIRACL languages, since small models may answer in the
# question's language.
ABSTENTION_PHRASES: tuple[str, ...] = (
    "i dont know",
    "i do not know",
    "unknown",
    "no answer",
    "not mentioned",
    "not provided",
    "not specified",
    "cannot be determined",
    "cannot answer",
    "cant answer",
    "unanswerable",
    "no information",
    "not enough information",
    "none of the documents",
    # "No, the document does not contain …": how SmolLM2 declines (articles are normalised away)
    "document does not contain",
    "documents do not contain",
    "document doesnt contain",
    "documents dont contain",
    "no relevant information",
    "no se",
    "no lo se",
    "weiss nicht",
    "weiß nicht",
    "keine antwort",
    "不知道",
    "无法回答",
    "わかりません",
    "分かりません",
    "不明",
    "لا أعرف",
    "لا اعرف",
    "sijui",
    "hakuna jibu",
)


def normalize_answer(text: str) -> str:
    """SQuAD/NQ normalisation: lower case, no punctuation, no articles, single spaces."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def answer_correct(prediction: str, answers: Collection[str]) -> bool:
    """True when some gold answer occurs in the normalised prediction (NQ-open's metric in
    the lost-in-the-middle evaluation); empty gold strings never match."""
    predicted = normalize_answer(prediction)
    golds = (normalize_answer(a) for a in answers)
    return any(g and g in predicted for g in golds)


def exact_match(prediction: str, answers: Collection[str]) -> bool:
    """The normalised prediction equals a normalised gold answer (SQuAD's EM): unlike
    :func:`answer_correct`, a sentence that merely contains the answer does not count."""
    predicted = normalize_answer(prediction)
    return bool(predicted) and any(predicted == normalize_answer(a) for a in answers)


ECHO_SHARE = 0.75
"""An answer of two or more words is an echo when at least this share of its words are
the question's words (for "Who wrote Hamlet?": "Who wrote Hamlet", "wrote hamlet")."""


def is_echo(answer: str, question: str) -> bool:
    """The answer repeats the question instead of answering it. Counted on normalised
    words; a one-word answer is never an echo (a one-word answer taken from the question,
    "Hamlet", can be right)."""
    words = normalize_answer(answer).split()
    if len(words) < 2:
        return False
    asked = set(normalize_answer(question).split())
    return sum(w in asked for w in words) >= ECHO_SHARE * len(words)


def _strip_accents(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def is_abstention(answer: str) -> bool:
    """The model declined: empty answer or one of :data:`ABSTENTION_PHRASES`."""
    norm = normalize_answer(answer)
    if not norm:
        return True
    plain = f" {_strip_accents(norm)} "
    return any(_phrase_in(_strip_accents(p), plain) for p in ABSTENTION_PHRASES)


def _phrase_in(phrase: str, padded: str) -> bool:
    # Space-separated scripts match whole words ("no se" must not match "piano serenade");
    # scripts written without spaces (Chinese, Japanese) match as substrings.
    if phrase.isascii():
        return f" {phrase} " in padded
    return phrase in padded


def recall_at_k(ranking: Sequence[int], relevant: Collection[int], k: int) -> float | None:
    """|relevant in top-k| / |relevant|; None when nothing is known to be relevant (such a
    question is left out of the mean rather than counted as a miss)."""
    if not relevant:
        return None
    hits = len(set(ranking[:k]) & set(relevant))
    return hits / len(relevant)


def rank_by_scores(scores: Sequence[float]) -> list[int]:
    """Indices by decreasing score; ties keep the given order, so a ranker that cannot tell
    passages apart falls back to the retriever's order instead of an arbitrary one."""
    return sorted(range(len(scores)), key=lambda i: (-scores[i], i))


@dataclass(frozen=True)
class Concentration:
    """How peaked the positive attribution mass over passages is.

    ``entropy``: Shannon entropy of the normalised positive mass divided by log(n), in
    [0, 1] (0: one passage holds everything). ``top1_share``: the largest passage's share.
    """

    entropy: float
    top1_share: float


def concentration(scores: Sequence[float]) -> Concentration | None:
    """Concentration of the positive part of ``scores``; None when no passage has positive
    mass (the answer did not depend on any passage) or there is a single passage."""
    positive = [max(float(s), 0.0) for s in scores]
    total = sum(positive)
    if total <= 0.0 or len(positive) < 2:
        return None
    shares = [p / total for p in positive]
    entropy = -sum(p * math.log(p) for p in shares if p > 0)
    return Concentration(entropy=entropy / math.log(len(shares)), top1_share=max(shares))
