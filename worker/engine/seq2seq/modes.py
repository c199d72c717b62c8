"""How a coalition becomes the decoder's memory: joint mode (its masked prompt through the
encoder, batched) and FiD mode (passages encoded once when the session opens; a coalition
is a mask over their cross-attention keys and values, plus a question-only passage shown
when nothing else is, so the encoder never runs again in the job). In FiD the rows of a
batch share one set of keys and values, read once per call for all."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from worker.engine.batching.budget import single_coalition
from worker.engine.errors import ContextTooLong
from worker.engine.prompt_layout import PromptLayout
from worker.engine.prompts import Encoded, PromptStyle, fid_passage
from worker.engine.seq2seq.kernel import EncoderMemory
from worker.engine.seq2seq.session import Key, Seq2SeqSession
from worker.shapley import segment
from worker.shapley.units import Document, Masking, Unit

if TYPE_CHECKING:
    from worker.engine.seq2seq.engine import Seq2SeqEngine

# The joint T5 prompt stays the plain one: the few-shot format is for decoder-only base
# models, where it was measured (docs/results.md, "Prompts"); no real T5 runs here to
# measure it on, and a byte-level tokenizer would pay ~900 tokens for it.
JOINT_STYLE: PromptStyle = "plain"


class JointSession(Seq2SeqSession):
    """Joint mode: the coalition's whole masked prompt goes through the encoder."""

    def __init__(
        self,
        engine: Seq2SeqEngine,
        question: str,
        docs: list[Document],
        masking: Masking,
        max_new_tokens: int,
    ):
        super().__init__(engine, max_new_tokens)
        self.layout = PromptLayout(engine.codec, question, docs, masking, engine.pad, JOINT_STYLE)
        self.full = (*self.layout.full(), engine.eos)
        if len(self.full) > engine.max_context_tokens:
            raise ContextTooLong(len(self.full), engine.max_context_tokens)

    def key(self, units: Sequence[Unit], mask: np.ndarray) -> Key:
        return (*self.layout.ids(units, mask), self.engine.eos)

    def prompt_ids(self, units: Sequence[Unit], mask: np.ndarray) -> Key:
        """Encoder input ids of the coalition (pad ids mark removed tokens under pad masking)."""
        return self.key(units, mask)

    def _width(self) -> int:
        return len(self.full)

    def prompt_tokens(self, key: Key) -> Sequence[int]:
        return [t for t in key if t != self.engine.pad]

    def memory(self, keys: list[Key]) -> EncoderMemory:
        width = max(len(k) for k in keys)
        ids = torch.full((len(keys), width), self.engine.pad, dtype=torch.long)
        for r, k in enumerate(keys):
            ids[r, : len(k)] = torch.tensor(k)
        mask = (ids != self.engine.pad).to(self.engine.torch_device)
        kernel = self.engine.kernel
        states = kernel.encode(ids.to(self.engine.torch_device), mask)
        self.stats.tokens_computed += ids.numel()
        return kernel.memory(states, mask)


class FidSession(Seq2SeqSession):
    """FiD mode: passages encoded once; a coalition is a cross-attention mask over them."""

    def __init__(
        self, engine: Seq2SeqEngine, question: str, docs: list[Document], max_new_tokens: int
    ):
        super().__init__(engine, max_new_tokens)
        self.docs = docs
        passages = [fid_passage(question, d) for d in docs] + [fid_passage(question, Document(""))]
        self.encoded = [engine.codec.encode(text) for text, _ in passages]
        self.offsets = [offset for _, offset in passages]
        longest = max(len(e.ids) + 1 for e in self.encoded)
        if longest > engine.max_context_tokens:
            raise ContextTooLong(longest, engine.max_context_tokens)
        self.states, self.slots = single_coalition(self._encode_passages)
        self.slot_ids = np.array([t for e in self.encoded for t in (*e.ids, engine.eos)])
        self.shared = engine.kernel.memory(self.states, torch.ones(1, 1, dtype=torch.bool))
        self._keep_cache: dict[tuple[int, tuple[tuple[int, int], ...]], tuple[int, ...]] = {}

    def _encode_passages(self) -> tuple[torch.Tensor, list[range]]:
        """Every passage through the encoder once, each on its own (no padding), then
        concatenated as FiD does."""
        parts, slots, start = [], [], 0
        for e in self.encoded:
            ids = torch.tensor([(*e.ids, self.engine.eos)], device=self.engine.torch_device)
            parts.append(self.engine.kernel.encode(ids, None)[0])
            slots.append(range(start, start + ids.shape[1]))
            start += ids.shape[1]
            self.stats.tokens_computed += ids.shape[1]
        self.stats.forward_passes += 1
        return torch.cat(parts)[None], slots

    def key(self, units: Sequence[Unit], mask: np.ndarray) -> Key:
        shown = segment.shown_documents(units, mask)
        spans = segment.removed_spans(units, mask, self.docs)
        keep: list[int] = []
        for i in shown:
            keep.extend(self._kept_slots(i, tuple(spans.get(i, ()))))
        return tuple(keep) if keep else tuple(self.slots[-1])

    def _kept_slots(self, i: int, spans: tuple[tuple[int, int], ...]) -> tuple[int, ...]:
        if (i, spans) not in self._keep_cache:
            if not spans:
                kept = tuple(self.slots[i])
            else:
                flags = self._token_keep(i, list(spans))
                kept = tuple(s for s, t in zip(self.slots[i], flags, strict=True) if t)
            self._keep_cache[(i, spans)] = kept
        return self._keep_cache[(i, spans)]

    def _token_keep(self, i: int, spans: list[tuple[int, int]]) -> list[bool]:
        encoded: Encoded = self.encoded[i]
        off = self.offsets[i]
        flags = [not any(a - off < e and s < b - off for s, e in spans) for a, b in encoded.spans]
        return [*flags, True]  # the passage's EOS

    def memory(self, keys: list[Key]) -> EncoderMemory:
        mask = torch.zeros((len(keys), self.states.shape[1]), dtype=torch.bool)
        for r, k in enumerate(keys):
            mask[r, torch.tensor(k)] = True
        return EncoderMemory(self.shared.parts, mask.to(self.engine.torch_device))

    def _width(self) -> int:
        return self.max_new_tokens + 1

    def prompt_tokens(self, key: Key) -> Sequence[int]:
        return self.slot_ids[np.asarray(key)].tolist()  # type: ignore[no-any-return]
