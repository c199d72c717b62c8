"""Encoder-decoder engine (T5, Flan-T5, FiD): joint mode and FiD mode.

Joint mode: one prompt; each coalition's encoder input is its masked prompt (removed
documents dropped, or removed tokens replaced by pad and masked out: positions kept), and
the encoder runs once per coalition, batched. FiD mode: each passage is encoded once with
the question when the session opens; a coalition is only a mask over those cached encoder
states (plus a question-only passage shown when nothing else is), so the encoder never
runs again in the job. Either way the decoder first verifies the job's most frequent
answer as a draft in one teacher-forced pass and decodes further only where greedy leaves
it.
"""

from __future__ import annotations

import copy
from abc import abstractmethod
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from transformers.modeling_outputs import BaseModelOutput

from worker.engine.base import Engine, EngineOptions, EngineSession, check_masks
from worker.engine.errors import ContextTooLong
from worker.engine.layout import PromptLayout
from worker.engine.loading import LoadedModel
from worker.engine.memory import CPU_TOKENS, split_on_oom
from worker.engine.prompts import Codec, Encoded, fid_passage
from worker.engine.stopping import StopRule, newline_ids
from worker.shapley import segment
from worker.shapley.oracle import Masks, OracleStats
from worker.shapley.units import Document, Masking, Unit

Key = tuple[int, ...]


class Seq2SeqEngine(Engine):
    """A resident encoder-decoder model, in joint or FiD mode."""

    family = "seq2seq"

    def __init__(self, loaded: LoadedModel, name: str, *, fid: bool, options: EngineOptions):
        self.name, self.model, self.fid, self.options = name, loaded.model, fid, options
        self.device, self.torch_device = str(loaded.device), loaded.device
        self.attention_backend = loaded.attention_backend
        self.codec = Codec(loaded.tokenizer)
        config = self.model.config
        self.max_context_tokens = int(getattr(config, "n_positions", 0) or 4096)
        self.eos = int(config.eos_token_id)
        self.pad = int(config.pad_token_id)
        self.start = int(config.decoder_start_token_id)
        self.newline_ids = newline_ids(loaded.tokenizer)
        self._warm_up()

    def open_session(
        self,
        question: str,
        documents: list[Document],
        *,
        masking: Masking = "remove",
        max_new_tokens: int = 16,
    ) -> Seq2SeqSession:
        if self.fid:
            return FidSession(self, question, documents, max_new_tokens)
        return JointSession(self, question, documents, masking, max_new_tokens)

    def count_tokens(self, question: str, documents: list[Document]) -> int:
        if self.fid:
            return max(
                len(self.codec.encode(fid_passage(question, d)[0]).ids) + 1 for d in documents
            )
        return len(PromptLayout(self.codec, question, documents, "remove", self.pad).full()) + 1

    def _warm_up(self) -> None:
        docs = [Document("Warm-up passage.", "Warm-up")]
        units = segment.document_units(docs)
        self.open_session("Warm up?", docs, max_new_tokens=2).answers(units, np.ones((1, 1), bool))


class Seq2SeqSession(EngineSession):
    """Greedy decoding and teacher forcing over encoder states; subclasses say how a
    coalition becomes encoder states and a cross-attention mask."""

    def __init__(self, engine: Seq2SeqEngine, max_new_tokens: int) -> None:
        self.engine, self.max_new_tokens = engine, max_new_tokens
        self.stats = OracleStats(attention_backend=engine.attention_backend)
        self._memo: dict[Key, tuple[int, ...]] = {}
        self._answer_ids: dict[str, tuple[int, ...]] = {}
        self._counts: Counter[tuple[int, ...]] = Counter()
        newline = engine.newline_ids if engine.options.stop_at_newline else frozenset()
        eos = frozenset({engine.eos})
        self.stop = StopRule(engine.codec.tokenizer, eos, max_new_tokens, newline)

    @abstractmethod
    def key(self, units: Sequence[Unit], mask: np.ndarray) -> Key:
        """What identifies a coalition's input (equal keys give equal answers)."""

    @abstractmethod
    def encode(self, keys: list[Key]) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder states (B, S, H) and cross-attention mask (B, S) for the coalitions."""

    def answers(self, units: Sequence[Unit], masks: Masks) -> list[str]:
        keys = [self.key(units, row) for row in check_masks(units, masks)]
        # sorted by length so that a batch's rows pad little (joint mode: encoder inputs)
        todo = sorted(dict.fromkeys(k for k in keys if k not in self._memo), key=len)
        for batch in self._batches(todo):
            split_on_oom(self._decode_batch, batch)
        return [self._text(self._memo[k]) for k in keys]

    def answer_tokens(self, units: Sequence[Unit], masks: Masks) -> list[tuple[int, ...]]:
        """The generated token ids per coalition, with the EOS or newline token that ended it."""
        self.answers(units, masks)
        return [self._memo[self.key(units, row)] for row in check_masks(units, masks)]

    def log_probs(
        self, units: Sequence[Unit], masks: Masks, answer: str
    ) -> npt.NDArray[np.float64]:
        keys = [self.key(units, row) for row in check_masks(units, masks)]
        target = self._answer_ids.get(answer) or (
            *self.engine.codec.encode(answer).ids,
            self.engine.eos,
        )
        out = np.zeros(len(keys), dtype=np.float64)
        for batch in self._batches(list(range(len(keys)))):
            scored = split_on_oom(lambda b: self._score(b, keys, target), batch)
            out[batch] = scored
        return out

    def _batches(self, items: list) -> list[list]:
        size = self.engine.options.max_batch
        budget = self.engine.options.batch_tokens or CPU_TOKENS
        rows = max(1, min(size, budget // max(1, self._width())))
        return [items[i : i + rows] for i in range(0, len(items), rows)]

    def _width(self) -> int:
        return 512

    def _score(self, batch: list[int], keys: list[Key], target: tuple[int, ...]) -> list[float]:
        states, mask = self.encode([keys[i] for i in batch])
        forced = torch.tensor([(self.engine.start, *target[:-1])] * len(batch))
        logits = self._decoder(states, mask, forced)
        chosen = torch.log_softmax(logits, -1)[:, torch.arange(len(target)), torch.tensor(target)]
        return chosen.double().sum(-1).tolist()

    def _decode_batch(self, keys: list[Key]) -> list[None]:
        states, mask = self.encode(keys)
        self.stats.batch_sizes.append(len(keys))
        outputs, cache, computed = self._verify(states, mask)
        groups: dict[int, list[int]] = {}
        for r, out in enumerate(outputs):  # grouped before decoding: decoding changes lengths
            if not self._done(out):
                groups.setdefault(len(out), []).append(r)
        for length, rows in groups.items():
            part = cache if len(groups) == 1 else copy.deepcopy(cache)
            part.batch_select_indices(torch.tensor(rows, device=states.device))
            if computed > length:  # drop the draft positions past this group's accepted prefix
                part.crop(length - computed)
            self._greedy(states[rows], mask[rows], [outputs[r] for r in rows], part)
        for key, out in zip(keys, outputs, strict=True):
            self._remember(key, tuple(out))
        return []

    def _verify(self, states: torch.Tensor, mask: torch.Tensor) -> tuple[list[list[int]], Any, int]:
        """One decoder pass teacher-forcing the draft: greedy tokens while they match it.
        Returns the outputs, the decoder cache of that pass and how many positions it holds."""
        draft = self._draft()
        forced = torch.tensor([(self.engine.start, *draft)] * states.shape[0])
        logits, cache = self._decoder(states, mask, forced, cache=True)
        outputs = [self._accept(draft, row) for row in logits.argmax(-1).tolist()]
        return outputs, cache, forced.shape[1]

    def _accept(self, draft: tuple[int, ...], argmax: list[int]) -> list[int]:
        out: list[int] = []
        for i, token in enumerate(argmax):
            out.append(int(token))
            if draft:
                self.stats.draft_tokens_proposed += i < len(draft)
                self.stats.draft_tokens_accepted += i < len(draft) and token == draft[i]
            if self._done(out) or i >= len(draft) or token != draft[i]:
                return out
        return out

    def _draft(self) -> tuple[int, ...]:
        if not self.engine.options.speculative or not self._counts:
            return ()
        return self._counts.most_common(1)[0][0][: self.max_new_tokens]

    def _greedy(
        self, states: torch.Tensor, mask: torch.Tensor, outputs: list[list[int]], cache: Any
    ) -> None:
        """Cached greedy steps for rows of equal length; the cache holds all but the last token."""
        next_ids = torch.tensor([[out[-1]] for out in outputs])
        active = list(range(len(outputs)))
        while active:
            logits, cache = self._decoder(states, mask, next_ids, cache=cache)
            tokens = logits[:, -1].argmax(-1).tolist()
            for r, token in zip(active, tokens, strict=True):
                outputs[r].append(int(token))
            keep = [i for i, r in enumerate(active) if not self._done(outputs[r])]
            if len(keep) < len(active):
                index = torch.tensor(keep, dtype=torch.long, device=states.device)
                states, mask = states[index], mask[index.to(mask.device)]
                cache = _select(cache, index)
            active = [active[i] for i in keep]
            next_ids = torch.tensor([[outputs[r][-1]] for r in active])

    def _decoder(self, states, mask, ids, cache=None):  # type: ignore[no-untyped-def]
        """The decoder over ``ids`` (B, T) given encoder states; logits (B, T, V) in fp32."""
        device = self.engine.torch_device
        out = self.engine.model(
            encoder_outputs=BaseModelOutput(last_hidden_state=states),
            attention_mask=mask.to(device), decoder_input_ids=ids.to(device),
            cache=None if cache is True else cache, use_cache=cache is not None,
        )  # fmt: skip
        self.stats.forward_passes += ids.shape[0]
        self.stats.tokens_computed += ids.numel()
        logits = out.logits.float()
        return logits if cache is None else (logits, out.past_key_values)

    def _done(self, output: list[int]) -> bool:
        return self.stop.done(output)

    def _remember(self, key: Key, answer: tuple[int, ...]) -> None:
        self._memo[key] = answer
        self._answer_ids.setdefault(self._text(answer), answer)
        self._counts[answer] += 1

    def _text(self, answer: tuple[int, ...]) -> str:
        return self.stop.text(answer)


def _select(cache, index: torch.Tensor):  # type: ignore[no-untyped-def]
    cache.batch_select_indices(index)
    return cache


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
        self.layout = PromptLayout(engine.codec, question, docs, masking, engine.pad)
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

    def encode(self, keys: list[Key]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(k) for k in keys)
        ids = torch.full((len(keys), width), self.engine.pad, dtype=torch.long)
        for r, k in enumerate(keys):
            ids[r, : len(k)] = torch.tensor(k)
        mask = (ids != self.engine.pad).long()
        device = self.engine.torch_device
        states = self.engine.model.get_encoder()(
            input_ids=ids.to(device), attention_mask=mask.to(device)
        )
        self.stats.tokens_computed += ids.numel()
        return states.last_hidden_state, mask


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
        self.states, self.slots = self._encode_passages()

    def _encode_passages(self) -> tuple[torch.Tensor, list[range]]:
        """Every passage through the encoder once (batched), concatenated as FiD does."""
        ids = [(*e.ids, self.engine.eos) for e in self.encoded]
        width = max(len(i) for i in ids)
        batch = torch.full((len(ids), width), self.engine.pad, dtype=torch.long)
        for r, row in enumerate(ids):
            batch[r, : len(row)] = torch.tensor(row)
        mask = (batch != self.engine.pad).long()
        device = self.engine.torch_device
        out = self.engine.model.get_encoder()(
            input_ids=batch.to(device), attention_mask=mask.to(device)
        )
        self.stats.forward_passes += 1
        self.stats.tokens_computed += batch.numel()
        parts, slots, start = [], [], 0
        for r, row in enumerate(ids):
            parts.append(out.last_hidden_state[r, : len(row)])
            slots.append(range(start, start + len(row)))
            start += len(row)
        return torch.cat(parts)[None], slots

    def key(self, units: Sequence[Unit], mask: np.ndarray) -> Key:
        shown = set(segment.shown_documents(units, mask))
        spans = segment.removed_spans(units, mask, self.docs)
        keep: list[int] = []
        for i, slots in enumerate(self.slots[:-1]):
            if i in shown:
                keep.extend(
                    s
                    for s, t in zip(slots, self._token_keep(i, spans.get(i, [])), strict=True)
                    if t
                )
        return tuple(keep) if keep else tuple(self.slots[-1])

    def _token_keep(self, i: int, spans: list[tuple[int, int]]) -> list[bool]:
        encoded: Encoded = self.encoded[i]
        off = self.offsets[i]
        flags = [not any(a - off < e and s < b - off for s, e in spans) for a, b in encoded.spans]
        return [*flags, True]  # the passage's EOS

    def encode(self, keys: list[Key]) -> tuple[torch.Tensor, torch.Tensor]:
        mask = torch.zeros((len(keys), self.states.shape[1]), dtype=torch.long)
        for r, k in enumerate(keys):
            mask[r, list(k)] = 1
        return self.states.expand(len(keys), -1, -1), mask

    def _width(self) -> int:
        return self.states.shape[1]
