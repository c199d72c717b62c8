"""Look-up drafts: where greedy decoding leaves the job's answer tree, guess what follows.

Answers to questions over documents are mostly copied: a name, a date, a clause of a
passage, or the tail of another coalition's answer after a differing word. So the tokens
that followed the last generated n-gram elsewhere (in the job's answers first, then in
the coalition's own prompt) are a good draft. The engine verifies the draft in the same
forward pass as the next step, so a wrong guess costs a few token positions and never
changes an answer.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

Ids = npt.NDArray[np.int64]


def follow(corpus: Ids, generated: Sequence[int], length: int, longest: int = 3) -> list[int]:
    """Up to ``length`` tokens that followed the latest occurrence in ``corpus`` of the
    longest suffix of ``generated`` (at most ``longest`` tokens) found there; [] if none.
    Negative ids in ``corpus`` separate texts and are never proposed."""
    if length <= 0 or not len(generated) or not corpus.size:
        return []
    for n in range(min(longest, len(generated)), 0, -1):
        start = _last_match(corpus, np.asarray(generated[-n:], dtype=np.int64))
        if start is None:
            continue
        draft = corpus[start + n : start + n + length]
        stop = np.flatnonzero(draft < 0)
        draft = draft[: stop[0]] if stop.size else draft
        if draft.size:
            return [int(t) for t in draft]
    return []


def _last_match(corpus: Ids, pattern: Ids) -> int | None:
    """Start of the last occurrence of ``pattern`` that is followed by at least one token."""
    n = len(pattern)
    if len(corpus) <= n:
        return None
    hits = np.flatnonzero(corpus[: len(corpus) - n] == pattern[0])
    for k in range(1, n):
        hits = hits[corpus[hits + k] == pattern[k]]
    return int(hits[-1]) if hits.size else None


def corpus_of(texts: Sequence[Sequence[int]]) -> Ids:
    """Token sequences joined with -1 separators, in order of preference: a later match
    wins in ``follow``, so put the most trusted text last."""
    parts: list[int] = []
    for text in texts:
        parts.extend(text)
        parts.append(-1)
    return np.asarray(parts, dtype=np.int64)


class LookupDrafts:
    """A session's look-up drafting: proposes, counts and (where ``adaptive``) schedules
    the draft length as Hugging Face's assisted generation does: two more after a draft
    accepted in full, one fewer after a rejection; at 0 the session stops drafting by
    look-up. The seq2seq decoder adapts (every drafted position costs cross-attention over
    the whole memory, and its lockstep batch pads to the longest draft). The causal engine
    keeps the fixed length: adapting it there cost decoding passes (SmolLM2, 64 coalitions
    of one NQ question: 1.23 -> 1.31 passes per coalition in the tree layout, 1.61 -> 2.30
    in the linear one, the same tokens computed), since a draft verified in a pass the
    coalition runs anyway costs a few positions, while a shortened one costs a pass."""

    def __init__(self, limit: int, *, adaptive: bool) -> None:
        self.limit, self.length, self.adaptive = limit, limit, adaptive
        self.proposed = 0
        self.accepted = 0

    def guess(self, corpus: Ids, generated: Sequence[int], room: int) -> list[int]:
        """A draft of at most ``room`` tokens continuing ``generated`` (counted as proposed)."""
        draft = follow(corpus, generated, min(self.length, room))
        self.proposed += len(draft)
        return draft

    def settle(self, proposed: int, taken: int) -> None:
        """Count ``taken`` of a ``proposed``-token draft as accepted; adapt the length."""
        self.accepted += taken
        if not (self.adaptive and proposed):
            return
        if taken == proposed:
            self.length = min(self.length + 2, self.limit)
        else:
            self.length -= 1
