"""Greedy decoding with speculation and teacher forcing over encoder states (both modes).

Every decoder call feeds each row its last token plus a proposed continuation: the rest of
the likeliest answer for the coalition that extends the row's answer so far (the job's
``AnswerBook``, votes by the nearest coalitions decoded, as the causal engine drafts), or
where there is none a look-up draft (``LookupDrafts``:
what followed the last generated tokens in the job's answers or the coalition's passages;
its length adapts to how often it is accepted), and keeps the proposed tokens that equal
greedy's. Rows sit at their own positions in one lockstep batch, so rows that leave the
draft at different points never split the batch; finished rows drop out.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Hashable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import torch

from worker.engine.base import check_masks
from worker.engine.batching.budget import split_on_oom, token_budget
from worker.engine.seq2seq.kernel import Decoding, EncoderMemory
from worker.engine.session import DecodingSession, Mask
from worker.engine.speculation.acceptance import accept
from worker.engine.speculation.draft import game_of
from worker.engine.speculation.lookup import LookupDrafts, corpus_of
from worker.engine.stopping import StopRule
from worker.shapley.oracle import Masks, OracleStats
from worker.shapley.units import Unit

if TYPE_CHECKING:
    from worker.engine.seq2seq.engine import Seq2SeqEngine

Key = tuple[int, ...]
Answer = tuple[int, ...]


class Seq2SeqSession(DecodingSession):
    """Greedy decoding and teacher forcing over encoder states; subclasses say how a
    coalition becomes the decoder's memory."""

    def __init__(self, engine: Seq2SeqEngine, max_new_tokens: int) -> None:
        self.engine, self.max_new_tokens = engine, max_new_tokens
        options = engine.options
        newline = engine.newline_ids if options.stop_at_newline else frozenset()
        stop = StopRule(engine.codec.tokenizer, frozenset({engine.eos}), max_new_tokens, newline)
        super().__init__(
            engine.codec, stop, LookupDrafts(options.lookup_tokens, adaptive=True), engine.eos
        )
        self.stats = OracleStats(attention_backend=engine.attention_backend)

    @abstractmethod
    def key(self, units: Sequence[Unit], mask: np.ndarray) -> Key:
        """What identifies a coalition's input (equal keys give equal answers)."""

    @abstractmethod
    def memory(self, keys: list[Key]) -> EncoderMemory:
        """The decoder's memory for the coalitions ``keys``."""

    def answers(self, units: Sequence[Unit], masks: Masks) -> list[str]:
        return [self._text(a) for a in self.answer_tokens(units, masks)]

    def answer_tokens(self, units: Sequence[Unit], masks: Masks) -> list[Answer]:
        """The generated token ids per coalition, with the EOS or newline token that ended it."""
        rows = check_masks(units, masks)
        keys = [self.key(units, row) for row in rows]
        game = game_of(units)
        self._vote_known((game, k, row) for k, row in zip(keys, rows, strict=True))
        todo = {k: row for k, row in zip(keys, rows, strict=True) if k not in self._memo}
        # sorted by length so that a batch's rows pad little (joint mode: encoder inputs)
        for batch in self._batches(sorted(todo, key=len)):
            split_on_oom(lambda b: self._decode_batch(b, game, todo), batch)
        return [self._memo[k] for k in keys]

    def log_probs(
        self, units: Sequence[Unit], masks: Masks, answer: str
    ) -> npt.NDArray[np.float64]:
        keys = [self.key(units, row) for row in check_masks(units, masks)]
        target = self._target(answer)
        out = np.zeros(len(keys), dtype=np.float64)
        for batch in self._batches(list(range(len(keys)))):
            scored = split_on_oom(lambda b: self._score(b, keys, target), batch)
            out[batch] = scored
        return out

    def _batches(self, items: list[Any]) -> list[list[Any]]:
        size = self.engine.options.max_batch
        width = max(1, self._width())
        budget = self.engine.options.batch_tokens or token_budget(self.engine, width)
        rows = max(1, min(size, budget // width))
        return [items[i : i + rows] for i in range(0, len(items), rows)]

    def _width(self) -> int:
        return 512

    def _score(self, batch: list[int], keys: list[Key], target: Answer) -> list[float]:
        memory = self.memory([keys[i] for i in batch])
        decoding = self.engine.kernel.decoding(memory, len(target))
        forced = torch.tensor([(self.engine.start, *target[:-1])] * len(batch))
        logits = self._run(decoding, forced, [0] * len(batch))
        chosen = torch.log_softmax(logits, -1)[:, torch.arange(len(target)), torch.tensor(target)]
        return chosen.double().sum(-1).tolist()

    def _decode_batch(self, keys: list[Key], game: Hashable, masks: dict[Key, Mask]) -> list[None]:
        memory = self.memory(keys)
        self.stats.batch_sizes.append(len(keys))
        drafts = [self._drafts(game, masks[k]) for k in keys]
        for key, out in zip(keys, self._generate(memory, keys, drafts), strict=True):
            self._remember(key, tuple(out), game, masks[key])
        return []

    def _drafts(self, game: Hashable, mask: Mask) -> dict[Answer, Answer]:
        """The coalition's draft map: every prefix of the job's likeliest answers for it ->
        the continuation of the likeliest one (``AnswerBook.continuations``)."""
        if not self.engine.options.speculative:
            return {}
        return self.book.continuations(game, mask, self.engine.options.draft_nodes)

    def _generate(
        self, memory: EncoderMemory, keys: list[Key], drafts: list[dict[Answer, Answer]]
    ) -> list[list[int]]:
        """Greedy answers for the rows of ``memory``. Each decoder call feeds every
        unfinished row its last token (the start token at first) and a draft: the
        continuation of the row's answer so far in its draft map, or where there is none a
        look-up draft (``LookupDrafts.guess``); greedy tokens are appended while the fed
        ones equal them (``accept``). Each row keeps its own position in the cache."""
        decoding = self.engine.kernel.decoding(memory, 2 * self.max_new_tokens + 1)
        corpus = _Corpora(self, keys)
        outputs: list[list[int]] = [[] for _ in range(memory.mask.shape[0])]
        active = list(range(len(outputs)))
        while active:
            guesses = [self._draft(drafts[r], outputs[r], corpus, r) for r in active]
            width = 1 + max(len(g) for g, _ in guesses)
            fed = [
                [outputs[r][-1] if outputs[r] else self.engine.start, *g]
                + [self.engine.pad] * (width - 1 - len(g))
                for r, (g, _) in zip(active, guesses, strict=True)
            ]
            logits = self._run(decoding, torch.tensor(fed), [len(outputs[r]) for r in active])
            for r, (g, lookup), greedy in zip(
                active, guesses, logits.argmax(-1).tolist(), strict=True
            ):
                walk = accept(outputs[r], g, greedy, self.stop.done)
                if lookup:
                    self.lookup.settle(len(g), walk.accepted)
                else:
                    self.stats.draft_tokens_proposed += walk.proposed
                    self.stats.draft_tokens_accepted += walk.accepted
            keep = [i for i, r in enumerate(active) if not self._done(outputs[r])]
            if len(keep) < len(active) and keep:
                decoding.keep(keep)
            active = [active[i] for i in keep]
        return outputs

    def _draft(
        self, drafts: dict[Answer, Answer], out: list[int], corpus: _Corpora, r: int
    ) -> tuple[Sequence[int], bool]:
        """Row ``r``'s draft after ``out``: its draft map's continuation, else a look-up
        draft (then True)."""
        room = self.max_new_tokens - len(out) - 1
        guess: Sequence[int] = drafts.get(tuple(out), ())[:room]
        if guess or not out or self.lookup.length <= 0:
            return guess, False
        return self.lookup.guess(corpus.of(r), out, room), True

    @abstractmethod
    def prompt_tokens(self, key: Key) -> Sequence[int]:
        """The token ids the coalition ``key`` shows the model (for look-up drafts)."""

    def _run(self, decoding: Decoding, ids: torch.Tensor, pos: list[int]) -> torch.Tensor:
        logits, computed = decoding.step(ids, pos)
        self.stats.forward_passes += ids.shape[0]
        self.stats.tokens_computed += computed
        return logits

    def _done(self, output: list[int]) -> bool:
        return self.stop.done(output)


class _Corpora:
    """Per row the look-up corpus (its prompt, then the job's answers so far), built when
    the row first needs a look-up draft."""

    def __init__(self, session: Seq2SeqSession, keys: list[Key]) -> None:
        self.session, self.keys = session, keys
        self.answers = list(session._answer_ids.values())
        self.built: dict[int, np.ndarray] = {}

    def of(self, r: int) -> np.ndarray:
        if r not in self.built:
            prompt = self.session.prompt_tokens(self.keys[r])
            self.built[r] = corpus_of([prompt, *self.answers])
        return self.built[r]
