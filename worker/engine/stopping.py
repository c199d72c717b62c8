"""When a generated answer is over: EOS, the token limit, or a newline after the answer.

Small decoder-only models do not stop after answering: SmolLM2 went on with "Paris is the
capital of France.\\n\\nThe answer is not relevant to the" and the base Gemma with
"...Paris.\\nQuestion: What is ...". In the categorical Shapley game every different tail
is a different answer, so the answer space fragments and the scores lose their meaning;
the tail also costs decode steps. QA evaluation stops at the first newline
(``stop=["\\n"]``); this rule does the same but tolerates whitespace (newlines included)
before the answer starts, so a model that opens with "\\n" still answers.

Only tokens whose text contains a newline can end an answer (``newline_ids``, found once
per loaded tokenizer). When one is generated, the whole answer so far is decoded and the
rule applied to that text: deciding from the token's own text alone would be wrong where
a token's bytes only form a character together with the previous token's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


def newline_ids(tokenizer: Any) -> frozenset[int]:
    """Ids whose decoded text contains a newline (special tokens decode to nothing)."""
    texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))], skip_special_tokens=True)
    return frozenset(i for i, text in enumerate(texts) if "\n" in text)


def ends_answer(text: str) -> bool:
    """A newline follows non-whitespace answer text (leading whitespace does not count)."""
    return "\n" in text.lstrip()


def cut_answer(text: str) -> str:
    """The answer text: what precedes that newline, stripped."""
    return tidy(text.lstrip().split("\n", 1)[0])


def tidy(text: str) -> str:
    """Stripped, without the replacement characters a byte-level tokenizer decodes when
    ``max_new_tokens`` cut a multi-byte character (CJK, Arabic, emoji) in half."""
    return text.strip().rstrip("\ufffd").strip()


@dataclass(frozen=True)
class StopRule:
    """One session's stopping rule. ``newline`` is empty when the newline stop is off."""

    tokenizer: Any
    eos: frozenset[int]
    limit: int
    newline: frozenset[int]

    def done(self, output: Sequence[int]) -> bool:
        """The answer ``output`` (generated ids so far) is complete."""
        if not output:
            return False
        last = output[-1]
        if len(output) >= self.limit or last in self.eos:
            return True
        return last in self.newline and ends_answer(self.raw(output))

    def text(self, output: Sequence[int]) -> str:
        """The answer's text: decoded without EOS/special tokens, cut at the newline stop."""
        raw = self.raw(output)
        return cut_answer(raw) if self.newline else tidy(raw)

    def raw(self, output: Sequence[int]) -> str:
        ids = [t for t in output if t not in self.eos]
        return str(self.tokenizer.decode(ids, skip_special_tokens=True))
