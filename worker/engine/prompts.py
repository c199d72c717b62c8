"""Prompt builders per model family, and the token layout of a masked prompt.

A prompt is ``head + document blocks + tail``. Each piece is tokenised on its own, so a
coalition's token ids are a concatenation of cached pieces and the full-context prompt
shares its leading pieces with every coalition that keeps the leading documents (which is
what lets the causal engine reuse the full-context KV cache). The reference in the tests
runs plain ``generate`` on exactly these ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from worker.shapley.units import Document

PromptStyle = Literal["short", "plain"]
"""``short`` (the default) asks for the answer alone by a fixed few-shot completion format,
for base and instruct models alike; ``plain`` is the lost-in-the-middle prompt the earlier
evaluation records used ("Answer in a few words", in the chat template where the tokenizer
has one)."""

PLAIN_INSTRUCTION = (
    "Write a high-quality answer for the given question using only the provided search "
    "results (some of which might be irrelevant). Answer in a few words."
)
# Small models follow a pattern better than an instruction: three hand-written solved
# examples (invented for this purpose, none from any evaluation set), each with a
# distractor document, in the exact format of the real question that follows; questions
# written both as users type them and as NQ's lower-case queries. Measured on
# 8 NQ questions (docs/results.md, "Prompts"): SmolLM2-135M-Instruct kept its one-sentence
# answers under a stricter instruction in its chat template and under the same examples as
# chat turns, and answered in 1.4 words on average in this completion format.
FEW_SHOT = (
    "Answer each question with a short phrase from the documents, not a sentence.\n\n"
    "Document [1](Title: Lake Baikal) Lake Baikal, in southern Siberia, is the deepest "
    "lake in the world, with a maximum depth of 1,642 metres.\n"
    "Document [2](Title: Caspian Sea) The Caspian Sea is the largest inland body of water "
    "by area.\n"
    "Question: What is the deepest lake in the world?\n"
    "Answer: Lake Baikal\n\n"
    "Document [1](Title: Harbour bridge) The bridge opened in March 1932 after eight years "
    "of construction.\n"
    "Document [2](Title: Opera house) The opera house was designed by the Danish "
    "architect Jorn Utzon.\n"
    "Question: Who designed the opera house?\n"
    "Answer: Jorn Utzon\n\n"
    "Document [1](Title: Penicillin) Alexander Fleming discovered penicillin in 1928 at "
    "St Mary's Hospital in London.\n"
    "Document [2](Title: Insulin) Insulin was first used to treat diabetes in 1922.\n"
    "Question: when was penicillin discovered\n"
    "Answer: 1928\n\n"
)
_MARK = "\u0000DOCUMENTS\u0000"


def document_block(k: int, doc: Document) -> tuple[str, int]:
    """``Document [k](Title: …) text`` plus a newline, and where ``doc.text`` starts in it."""
    header = f"Document [{k}](Title: {doc.title}) "
    return f"{header}{doc.text}\n", len(header)


def qa_body(question: str) -> str:
    """The lost-in-the-middle QA prompt with a marker where the documents go."""
    return f"{PLAIN_INSTRUCTION}\n\n{_MARK}\nQuestion: {question}\nAnswer:"


def head_and_tail(tokenizer: Any, question: str, style: PromptStyle = "short") -> tuple[str, str]:
    """The text before and after the documents: the few-shot completion format (``short``),
    or the plain prompt, in the chat template when the tokenizer has one (``plain``)."""
    if style == "short":
        head, tail = f"{FEW_SHOT}{_MARK}Question: {question}\nAnswer:".split(_MARK)
        return head, tail
    if style != "plain":
        raise ValueError(f"unknown prompt style {style!r}; use 'short' or 'plain'")
    body = qa_body(question)
    if getattr(tokenizer, "chat_template", None):
        messages = [{"role": "user", "content": body}]
        body = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    head, tail = body.split(_MARK)
    return head, tail


def fid_passage(question: str, doc: Document) -> tuple[str, int]:
    """FiD's passage format (question with each passage), and where ``doc.text`` starts."""
    header = f"question: {question} title: {doc.title} context: "
    return header + doc.text, len(header)


@dataclass(frozen=True)
class Encoded:
    """Token ids of one text piece with each token's character span in that piece."""

    ids: tuple[int, ...]
    spans: tuple[tuple[int, int], ...]


class Codec:
    """Tokenises pieces without special tokens and remembers each piece's encoding."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self._memo: dict[str, Encoded] = {}

    def encode(self, text: str) -> Encoded:
        """Ids and character spans; byte-level slow tokenizers get spans from UTF-8 lengths."""
        hit = self._memo.get(text)
        if hit is None:
            hit = self._memo[text] = self._encode(text)
        return hit

    def _encode(self, text: str) -> Encoded:
        if getattr(self.tokenizer, "is_fast", False):
            out = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
            return Encoded(tuple(out["input_ids"]), tuple(map(tuple, out["offset_mapping"])))
        ids: list[int] = []
        spans: list[tuple[int, int]] = []
        byte_level = type(self.tokenizer).__name__ == "ByT5Tokenizer"
        for i, char in enumerate(text):
            piece = (
                [b + 3 for b in char.encode()]  # ByT5: byte b is id b + 3
                if byte_level
                else self.tokenizer(char, add_special_tokens=False)["input_ids"]
            )
            ids.extend(piece)
            spans.extend([(i, i + 1)] * len(piece))
        return Encoded(tuple(ids), tuple(spans))

    def decode(self, ids: Sequence[int]) -> str:
        """Answer text without special tokens, stripped."""
        return str(self.tokenizer.decode(list(ids), skip_special_tokens=True)).strip()


def padded(encoded: Encoded, offset: int, spans: Sequence[tuple[int, int]], pad: int) -> list[int]:
    """``encoded`` with every token overlapping a removed span (text starting at ``offset``)
    replaced by ``pad``: positions are kept."""
    ids = list(encoded.ids)
    for t, (a, b) in enumerate(encoded.spans):
        a, b = a - offset, b - offset
        if any(a < end and start < b for start, end in spans):
            ids[t] = pad
    return ids
