"""A job-wide memo of model answers, shared by every level of the hierarchy.

Each level is a different game (different units), but many coalitions show the model
exactly the same input: the full context, the empty one, every level-2 coalition that
keeps or drops refined documents whole. A coalition is keyed by what the model sees:
the documents shown and the exact character spans removed from them (contiguous
removed units merged). Equal keys render identically under both masking modes, so
such a coalition is decoded once per job, whatever the level asking.

The memo also counts how often every normalised answer was produced over the
distinct inputs decoded: the candidate frequencies.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from worker.shapley.game import Floats, Masks, normalize_answer
from worker.shapley.oracle import Oracle
from worker.shapley.units import Unit

Key = tuple[tuple[int, ...], tuple[tuple[int, int, int], ...]]


def input_key(units: Sequence[Unit], row: Masks) -> Key:
    """What the model sees for this coalition: shown documents, removed spans in them."""
    shown = sorted({u.document for u, keep in zip(units, row, strict=True) if keep})
    shown_set = set(shown)
    spans: list[tuple[int, int, int]] = []
    for unit, keep in sorted(zip(units, row, strict=True), key=lambda p: _order(p[0])):
        if keep or unit.document not in shown_set:
            continue
        if spans and spans[-1][0] == unit.document and spans[-1][2] == unit.start:
            spans[-1] = (unit.document, spans[-1][1], unit.end)
        else:
            spans.append((unit.document, unit.start, unit.end))
    return tuple(shown), tuple(spans)


def _order(unit: Unit) -> tuple[int, int]:
    return unit.document, unit.start


class CoalitionCache:
    """Decodes each distinct model input once per job (see the module docstring)."""

    def __init__(self, oracle: Oracle) -> None:
        self.oracle = oracle
        self._answers: dict[Key, str] = {}
        self._log_probs: dict[tuple[str, Key], float] = {}
        self.counts: Counter[str] = Counter()
        """Distinct decoded inputs per normalised answer."""
        self.surface: dict[str, str] = {}
        """First raw (stripped) answer seen per normalised answer."""

    @property
    def evaluated(self) -> int:
        """Distinct model inputs decoded or scored so far (an input both decoded and scored
        counts once: the answer game and the log-probability column share coalitions)."""
        return len(set(self._answers) | {key for _, key in self._log_probs})

    def answers(self, units: Sequence[Unit], masks: Masks) -> list[str]:
        """Raw answers for every coalition; only inputs never decoded reach the oracle."""
        keys = [input_key(units, row) for row in masks]
        missing = _first_rows([k not in self._answers for k in keys], keys)
        if missing:
            got = self.oracle.answers(units, masks[missing])
            for row, text in zip(missing, got, strict=True):
                self._record(keys[row], text)
        return [self._answers[k] for k in keys]

    def log_probs(self, units: Sequence[Unit], masks: Masks, answer: str) -> Floats:
        """log p(answer | coalition) for every coalition, each distinct input scored once."""
        keys = [(answer, input_key(units, row)) for row in masks]
        missing = _first_rows([k not in self._log_probs for k in keys], keys)
        if missing:
            got = self.oracle.log_probs(units, masks[missing], answer)
            for row, value in zip(missing, np.asarray(got, dtype=np.float64), strict=True):
                self._log_probs[keys[row]] = float(value)
        return np.array([self._log_probs[k] for k in keys], dtype=np.float64)

    def _record(self, key: Key, text: str) -> None:
        self._answers[key] = text
        norm = normalize_answer(text)
        self.counts[norm] += 1
        self.surface.setdefault(norm, text.strip())


def _first_rows(missing: list[bool], keys: Sequence[object]) -> list[int]:
    """Rows whose key is missing, one row per distinct key."""
    seen: set[object] = set()
    rows = []
    for row, (miss, key) in enumerate(zip(missing, keys, strict=True)):
        if miss and key not in seen:
            seen.add(key)
            rows.append(row)
    return rows
