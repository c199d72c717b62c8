"""Games over coalitions: memoised, batched value functions for the estimators.

A coalition is a boolean row (True keeps the feature). A game evaluates only the
coalitions it has never seen, in batches of ``batch_size`` (the engine decodes one
batch per call), and counts how many distinct coalitions it evaluated so that
estimators can hold a hard budget. Progress and cancellation hooks run per batch,
because batches are where the time goes.

:class:`CategoricalGame` is the answer game: ``v_y(S) = 1[f(S) = y]`` for every
distinct normalised answer ``y``. The answer set grows while sampling, so estimators
read values only after they finish sampling (``values`` one-hot encodes over the
answers known at call time). Given ``log_prob``, the answer game also scores the
full-context answer ``y`` on every coalition it evaluates (``log p(y | S)``), as one more
output column labelled :data:`LOGPROB_KEY`: both games then come from the same coalitions
and the same estimator run. :class:`RealGame` holds one real value per coalition (the
log-probability of a fixed answer).
"""

from __future__ import annotations

import re
import unicodedata
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

from worker.shapley.errors import ShapleyInputError

Masks = npt.NDArray[np.bool_]
Floats = npt.NDArray[np.float64]
Progress = Callable[[int, int], None]
"""Called after every batch with (distinct coalitions evaluated, budget or 0)."""
Checkpoint = Callable[[], None]
"""Called before every batch; raises to abort the game (cancellation)."""

_SPACE = re.compile(r"\s+")
_ARTICLES = re.compile(r"\b(a|an|the)\b")

LOGPROB_KEY = "\x00logprob"
"""Output label of the log p(y | S) column; no normalised answer can equal it (control
characters normalise to spaces)."""


def normalize_answer(text: str) -> str:
    """QA normalisation: lowercase, drop punctuation and symbols (any script), drop the
    English articles, collapse whitespace ("The Beatles." and "beatles" are one answer).

    Letters, digits and combining marks of every script are kept, so answers in
    Chinese or Arabic normalise as well as English ones.
    """
    kept = "".join(
        " " if unicodedata.category(ch)[0] in "PSZC" else ch
        for ch in unicodedata.normalize("NFC", text.casefold())
    )
    return _SPACE.sub(" ", _ARTICLES.sub(" ", kept)).strip()


def coalition_key(row: Masks) -> bytes:
    """A compact hashable key for one coalition."""
    return np.packbits(row).tobytes()


class _MemoGame(ABC):
    """Memo, batching, budget accounting and hooks shared by both game types."""

    def __init__(
        self,
        n_features: int,
        batch_size: int = 32,
        progress: Progress | None = None,
        checkpoint: Checkpoint | None = None,
    ) -> None:
        if n_features < 1:
            raise ShapleyInputError("a game needs at least one feature (got zero)")
        if batch_size < 1:
            raise ShapleyInputError(f"batch_size must be >= 1 (got {batch_size})")
        self.n_features = n_features
        self.batch_size = batch_size
        self.budget = 0
        self._progress = progress
        self._checkpoint = checkpoint
        self._index: dict[bytes, int] = {}

    @property
    def evaluations(self) -> int:
        """Distinct coalitions evaluated so far."""
        return len(self._index)

    def check_masks(self, masks: Masks) -> Masks:
        """``masks`` as a bool matrix of this game's width, or ShapleyInputError."""
        array = np.asarray(masks)
        if array.ndim != 2 or array.shape[1] != self.n_features or array.dtype != np.bool_:
            raise ShapleyInputError(
                f"masks must be a bool array of shape (m, {self.n_features}); "
                f"got {array.dtype} {array.shape}"
            )
        return array

    def known(self, key: bytes) -> bool:
        """Whether the coalition with this :func:`coalition_key` was evaluated."""
        return key in self._index

    def unseen(self, masks: Masks) -> int:
        """How many distinct coalitions in ``masks`` this game has not evaluated yet."""
        keys = {coalition_key(row) for row in self.check_masks(masks)}
        return sum(1 for key in keys if key not in self._index)

    def evaluate(self, masks: Masks) -> None:
        """Evaluate every not-yet-seen coalition of ``masks``, in batches."""
        todo: dict[bytes, Masks] = {}
        for row in self.check_masks(masks):
            key = coalition_key(row)
            if key not in self._index and key not in todo:
                todo[key] = row
        keys = list(todo)
        for start in range(0, len(keys), self.batch_size):
            batch = keys[start : start + self.batch_size]
            if self._checkpoint is not None:
                self._checkpoint()
            self._store(batch, np.stack([todo[k] for k in batch]))
            if self._progress is not None:
                self._progress(self.evaluations, self.budget)

    def _rows(self, masks: Masks) -> list[int]:
        masks = self.check_masks(masks)
        self.evaluate(masks)
        return [self._index[coalition_key(row)] for row in masks]

    @abstractmethod
    def _store(self, keys: list[bytes], masks: Masks) -> None:
        """Evaluate the new coalitions ``masks`` (memo keys ``keys``) and record their values."""


class CategoricalGame(_MemoGame):
    """The answer game; ``values`` is one-hot over the distinct normalised answers."""

    def __init__(
        self,
        n_features: int,
        evaluate: Callable[[Masks], Sequence[str]],
        batch_size: int = 32,
        progress: Progress | None = None,
        checkpoint: Checkpoint | None = None,
        log_prob: Callable[[Masks], Sequence[float] | Floats] | None = None,
    ) -> None:
        super().__init__(n_features, batch_size, progress, checkpoint)
        self._evaluate = evaluate
        self._log_prob = log_prob
        self._log_probs: list[float] = []
        self._answer_of: list[int] = []
        self._answer_ids: dict[str, int] = {}
        self.answers: list[str] = []
        """Normalised answers in order of first appearance (column order of ``values``)."""
        self.surface: list[str] = []
        """The first raw answer seen for each normalised answer (for display)."""

    @property
    def n_outputs(self) -> int:
        return len(self.answers)

    @property
    def outputs(self) -> list[str]:
        """Column labels of :meth:`values`: the answers, then :data:`LOGPROB_KEY` if scored."""
        return self.answers + ([LOGPROB_KEY] if self._log_prob is not None else [])

    def _store(self, keys: list[bytes], masks: Masks) -> None:
        raw = list(self._evaluate(masks))
        if len(raw) != len(keys):
            raise ShapleyInputError(f"evaluate returned {len(raw)} answers for {len(keys)} masks")
        if self._log_prob is not None:  # after decoding: the prompts are in the engine's store
            self._log_probs.extend(_finite(self._log_prob(masks), len(keys)))
        for key, text in zip(keys, raw, strict=True):
            self._index[key] = len(self._answer_of)
            self._answer_of.append(self._answer_id(text))

    def _answer_id(self, text: str) -> int:
        norm = normalize_answer(text)
        if norm not in self._answer_ids:
            self._answer_ids[norm] = len(self.answers)
            self.answers.append(norm)
            self.surface.append(text.strip())
        return self._answer_ids[norm]

    def answer_ids(self, masks: Masks) -> npt.NDArray[np.int64]:
        """The answer id of every coalition (evaluating unseen ones)."""
        rows = self._rows(masks)
        return np.asarray(self._answer_of, dtype=np.int64)[rows].reshape(len(rows))

    def values(self, masks: Masks) -> Floats:
        """(m, K) one-hot values over the K answers known after evaluating ``masks``."""
        ids = self.answer_ids(masks)
        out = np.zeros((len(ids), self.n_outputs), dtype=np.float64)
        out[np.arange(len(ids)), ids] = 1.0
        if self._log_prob is None:
            return out
        rows = self._rows(masks)
        real = np.asarray(self._log_probs, dtype=np.float64)[rows].reshape(-1, 1)
        return np.concatenate([out, real], axis=1)


def _finite(values: Sequence[float] | Floats, count: int) -> list[float]:
    got = np.asarray(values, dtype=np.float64).reshape(-1)
    if len(got) != count or not np.all(np.isfinite(got)):
        raise ShapleyInputError(
            f"evaluate must return {count} finite floats; got {got.tolist()[:8]}"
        )
    return [float(v) for v in got]


class RealGame(_MemoGame):
    """A real-valued game (one output), e.g. log p(answer | coalition)."""

    def __init__(
        self,
        n_features: int,
        evaluate: Callable[[Masks], Sequence[float] | Floats],
        batch_size: int = 32,
        progress: Progress | None = None,
        checkpoint: Checkpoint | None = None,
        label: str = "value",
    ) -> None:
        super().__init__(n_features, batch_size, progress, checkpoint)
        self._evaluate = evaluate
        self._values: list[float] = []
        self.answers = [label]
        self.surface = [label]

    @property
    def n_outputs(self) -> int:
        return 1

    @property
    def outputs(self) -> list[str]:
        return self.answers

    def _store(self, keys: list[bytes], masks: Masks) -> None:
        got = _finite(self._evaluate(masks), len(keys))
        for key, value in zip(keys, got, strict=True):
            self._index[key] = len(self._values)
            self._values.append(float(value))

    def values(self, masks: Masks) -> Floats:
        """(m, 1) values of ``masks``."""
        rows = self._rows(masks)
        return np.asarray(self._values, dtype=np.float64)[rows].reshape(-1, 1)


Game = CategoricalGame | RealGame
