"""What every decoding session keeps for one job, whatever the model family: the answer
memo (a coalition decoded once is never decoded again), the answers' token ids, the book of
answers the drafts come from, the stop rule, the look-up drafts and their counters, and the
warm-up both engines run at load."""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Protocol

import numpy as np
import numpy.typing as npt

from worker.engine.base import EngineSession
from worker.engine.prompts import Codec
from worker.engine.speculation.draft import AnswerBook
from worker.engine.speculation.lookup import LookupDrafts
from worker.engine.stopping import StopRule
from worker.shapley import segment
from worker.shapley.units import Document

Answer = tuple[int, ...]
Mask = npt.NDArray[np.bool_]


class Opens(Protocol):
    def open_session(
        self, question: str, documents: list[Document], *, max_new_tokens: int
    ) -> EngineSession: ...


class DecodingSession(EngineSession):
    """The family-independent half of a session (see the module docstring)."""

    def __init__(
        self, codec: Codec, stop: StopRule, lookup: LookupDrafts, target_end: int | None
    ) -> None:
        self.codec, self.stop, self.lookup = codec, stop, lookup
        self._target_end = target_end  # appended to a scored answer's tokens (EOS)
        self._memo: dict[Hashable, Answer] = {}
        self._answer_ids: dict[str, Answer] = {}
        self.book = AnswerBook()  # the job's answers and who gave them: the drafts

    @property
    def lookup_proposed(self) -> int:
        return self.lookup.proposed

    @property
    def lookup_accepted(self) -> int:
        return self.lookup.accepted

    def _remember(
        self, key: Hashable, answer: Answer, game: Hashable = None, mask: Mask | None = None
    ) -> None:
        """A coalition (``mask`` of the unit list ``game``) was decoded to ``answer``."""
        self._memo[key] = answer
        text = self._text(answer)
        if mask is not None and bool(np.all(mask)):
            self._answer_ids[text] = answer  # the full context's own ids: what "y" is
        else:
            self._answer_ids.setdefault(text, answer)
        self.book.record(game, mask, answer)

    def _vote_known(self, coalitions: Iterable[tuple[Hashable, Hashable, Mask | None]]) -> None:
        """Coalitions (game, key, mask) already decoded, for another unit list or in an
        earlier call, vote in their game's drafts too."""
        for game, key, mask in coalitions:
            if key in self._memo:
                self.book.record(game, mask, self._memo[key])

    def _text(self, answer: Answer) -> str:
        return self.stop.text(answer)

    def target_ids(self, answer: str) -> tuple[int, ...]:
        """The token ids ``log_probs`` scores for ``answer`` (see :meth:`_target`), for peers
        that must score the same sequence (ContextCite in the evaluation harness)."""
        return tuple(self._target(answer))

    def _target(self, answer: str) -> Answer:
        """The token ids teacher forcing scores for ``answer``: the ids the full context
        generated it as where it did, else the ids of the first coalition that did, else its
        encoding followed by the end token. Texts are compared after the stop rule's tidying,
        so one text can come from several id sequences (SmolLM2 answers " 2022" as a space
        token and four digits; its encoding "2022" lacks the space and scored log p -14.2
        where the generated ids score -2.7): a session that never decoded ``answer`` scores
        another sequence than the model's, and callers that mean the model's answer decode
        the full context first."""
        if answer in self._answer_ids:
            return self._answer_ids[answer]
        end = () if self._target_end is None else (self._target_end,)
        return (*self.codec.encode(answer).ids, *end)


def warm_up(engine: Opens) -> None:
    """One tiny coalition through a fresh session, so the first job pays no one-time costs
    (kernel selection, allocator growth) inside its measured time."""
    docs = [Document("Warm-up passage.", "Warm-up")]
    units = segment.document_units(docs)
    engine.open_session("Warm up?", docs, max_new_tokens=2).answers(units, np.ones((1, 1), bool))
