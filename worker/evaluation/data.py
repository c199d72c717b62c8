"""Loading the evaluation files: NaturalQuestions-open (lost-in-the-middle layout), NoMIRACL,
and MIRACL-style qrels (``qid Q0 docid rel``).

Both JSONL layouts become one :class:`Example`; what tells them apart is which fields are
present, so a user's own file in either layout works too.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from worker.shapley.units import Document

Qrels = dict[str, dict[str, int]]
"""qid -> docid -> relevance grade."""


@dataclass(frozen=True)
class Example:
    """One question with its passages.

    ``relevant``: indices of passages known to answer the question (NQ's gold passage, or
    judged relevant in qrels); empty when unknown. ``context_relevant``: MIRACL's
    query-level label (None for NQ).
    """

    id: str
    question: str
    documents: tuple[Document, ...]
    answers: tuple[str, ...] = ()
    relevant: frozenset[int] = frozenset()
    docids: tuple[str, ...] = ()
    lang: str = "en"
    context_relevant: bool | None = None


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """Objects of a JSONL file, gzip-compressed or not (told by the ``.gz`` suffix)."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)


def _relevant_indices(obj: Mapping[str, Any], docids: tuple[str, ...], qrels: Qrels) -> set[int]:
    found = {i for i, d in enumerate(obj["documents"]) if d.get("is_gold")}
    if isinstance(obj.get("gold_index"), int):
        found.add(obj["gold_index"])
    judged = qrels.get(str(obj["id"]), {})
    found |= {i for i, docid in enumerate(docids) if judged.get(docid, 0) > 0}
    return found


def parse_example(obj: Mapping[str, Any], qrels: Qrels | None = None) -> Example:
    """An :class:`Example` from one JSON object of either layout."""
    docids = tuple(str(d) for d in obj.get("docids", ()))
    documents = tuple(
        Document(text=d["text"], title=d.get("title", "") or "") for d in obj["documents"]
    )
    return Example(
        id=str(obj["id"]),
        question=obj["question"],
        documents=documents,
        answers=tuple(obj.get("answers", ())),
        relevant=frozenset(_relevant_indices(obj, docids, qrels or {})),
        docids=docids,
        lang=obj.get("lang", "en"),
        context_relevant=obj.get("context_relevant"),
    )


def load_examples(
    path: Path,
    *,
    limit: int | None = None,
    qrels: Qrels | None = None,
    per_label: int | None = None,
) -> list[Example]:
    """The first ``limit`` examples of a file, in file order (so runs are comparable).

    ``per_label``: instead, the first N examples of each ``context_relevant`` label (and N
    of the unlabelled), for balanced with/without-relevant-context comparisons.
    """
    examples: list[Example] = []
    taken: dict[bool | None, int] = {}
    for obj in read_jsonl(path):
        if limit is not None and len(examples) >= limit:
            break
        label = obj.get("context_relevant")
        if per_label is not None and taken.get(label, 0) >= per_label:
            continue
        taken[label] = taken.get(label, 0) + 1
        examples.append(parse_example(obj, qrels))
    return examples


def load_qrels(path: Path) -> Qrels:
    """TREC qrels: ``qid Q0 docid rel`` per line (tabs or spaces); later lines win."""
    qrels: Qrels = {}
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 4:
                raise ValueError(f"{path}:{number}: expected 'qid Q0 docid rel', got {line!r}")
            qid, _, docid, rel = parts
            qrels.setdefault(qid, {})[docid] = int(rel)
    return qrels
