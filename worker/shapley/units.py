"""The vocabulary shared by segmentation, games, the engine and the API.

A *unit* is one feature of a game: a whole document, a sentence or a word, located by
character offsets into its document's ``text`` so that any client can highlight it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Level = Literal["document", "sentence", "word"]
LEVELS: tuple[Level, ...] = ("document", "sentence", "word")
Masking = Literal["remove", "pad"]


@dataclass(frozen=True)
class Document:
    """A context passage. The title belongs to the document and is never a unit itself."""

    text: str
    title: str = ""


@dataclass(frozen=True)
class Unit:
    """A feature: ``documents[document].text[start:end] == text``.

    A document-level unit spans its whole text (``start == 0``, ``end == len(text)``).
    Units of one game never overlap. Text of a document that no unit covers (spaces
    between sentences, say) is shown exactly when the document is shown, and a
    document is shown exactly when at least one of its units is kept; its title goes
    with it.
    """

    level: Level
    document: int
    start: int
    end: int
    text: str
