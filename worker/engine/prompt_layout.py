"""A coalition's token ids: head + document blocks + tail, under remove or pad masking.

The semantics of masking belong to the Shapley core (``segment.render`` for remove,
``segment.removed_spans`` for pad); this module only turns its output into token ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from worker.engine.prompts import Codec, PromptStyle, document_block, head_and_tail, padded
from worker.shapley import segment
from worker.shapley.units import Document, Masking, Unit


class PromptLayout:
    """The token ids of every coalition's prompt for one question and document set."""

    def __init__(
        self,
        codec: Codec,
        question: str,
        docs: Sequence[Document],
        masking: Masking,
        pad: int,
        style: PromptStyle = "short",
    ) -> None:
        head, tail = head_and_tail(codec.tokenizer, question, style)
        self.codec, self.docs, self.masking, self.pad = codec, list(docs), masking, pad
        self.head = _with_bos(codec.tokenizer, codec.encode(head).ids) if head else ()
        self.tail = codec.encode(tail).ids

    def full(self) -> tuple[int, ...]:
        """The prompt with every document shown in full."""
        blocks = [self._block(k, doc) for k, doc in enumerate(self.docs, start=1)]
        return self._join(blocks)

    def ids(self, units: Sequence[Unit], mask: np.ndarray) -> tuple[int, ...]:
        """The prompt of the coalition ``mask`` (True keeps a unit)."""
        if self.masking == "remove":
            kept = segment.render(self.docs, units, mask)
            return self._join([self._block(k, d) for k, (_, d) in enumerate(kept, start=1)])
        shown = set(segment.shown_documents(units, mask))
        spans = segment.removed_spans(units, mask, self.docs)
        blocks = [self._padded(i, i in shown, spans.get(i, [])) for i in range(len(self.docs))]
        return self._join(blocks)

    def kept_slots(self, units: Sequence[Unit], mask: np.ndarray) -> np.ndarray:
        """Fast mode: which full-context slots before the tail a coalition keeps (head always;
        a hidden document none of its slots; a shown one all but its removed units' tokens)."""
        shown = set(segment.shown_documents(units, mask))
        spans = segment.removed_spans(units, mask, self.docs)
        keep = [np.ones(len(self.head), dtype=bool)]
        for i, doc in enumerate(self.docs):
            text, offset = document_block(i + 1, doc)
            encoded = self.codec.encode(text)
            if i not in shown:
                keep.append(np.zeros(len(encoded.ids), dtype=bool))
                continue
            flags = np.asarray(padded(encoded, offset, spans.get(i, []), -1)) != -1
            keep.append(flags)
        return np.concatenate(keep)

    def _block(self, k: int, doc: Document) -> tuple[int, ...]:
        return self.codec.encode(document_block(k, doc)[0]).ids

    def _padded(self, i: int, shown: bool, spans: list[tuple[int, int]]) -> tuple[int, ...]:
        text, offset = document_block(i + 1, self.docs[i])
        encoded = self.codec.encode(text)
        if not shown:  # a hidden document keeps its slot, header and title included
            return (self.pad,) * len(encoded.ids)
        return tuple(padded(encoded, offset, spans, self.pad))

    def _join(self, blocks: list[tuple[int, ...]]) -> tuple[int, ...]:
        return self.head + tuple(t for block in blocks for t in block) + self.tail


def _with_bos(tokenizer: Any, ids: tuple[int, ...]) -> tuple[int, ...]:
    """Prepend BOS when the tokenizer adds one and the (chat) head does not carry it."""
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is None or not getattr(tokenizer, "add_bos_token", False) or ids[:1] == (bos,):
        return ids
    return (bos, *ids)
