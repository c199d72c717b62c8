"""The newline stop on hand-made token sequences: where an answer ends and what its text is."""

from __future__ import annotations

from collections.abc import Sequence

from worker.engine.loading.tiny import byte_tokenizer
from worker.engine.stopping import StopRule, cut_answer, ends_answer, newline_ids

EOS = frozenset({1})


class PieceTokenizer:
    """A tokenizer whose ids are the indices of fixed text pieces (id 1 is EOS, special)."""

    PIECES = ["<pad>", "</s>", "Paris", ".\n", "\n\n", "Question", " ", "\nThe"]

    def __len__(self) -> int:
        return len(self.PIECES)

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        return "".join(self.PIECES[i] for i in ids if not (skip_special_tokens and i < 2))

    def batch_decode(self, rows: Sequence[Sequence[int]], skip_special_tokens: bool) -> list[str]:
        return [self.decode(row, skip_special_tokens) for row in rows]


def rule(tokenizer, limit: int = 16, newline: bool = True) -> StopRule:
    ids = newline_ids(tokenizer) if newline else frozenset()
    return StopRule(tokenizer, EOS, limit, ids)


def first_done(stop: StopRule, output: list[int]) -> int | None:
    """The length of the shortest prefix of ``output`` that ``stop`` calls complete."""
    return next((n for n in range(1, len(output) + 1) if stop.done(output[:n])), None)


def byte_ids(text: str) -> list[int]:
    return [b + 3 for b in text.encode()]  # ByT5: byte b is id b + 3


def test_only_pieces_containing_a_newline_can_stop():
    assert newline_ids(PieceTokenizer()) == {3, 4, 7}
    assert newline_ids(byte_tokenizer()) == {13}


def test_a_token_ending_the_sentence_and_the_line_ends_the_answer_after_its_text():
    stop = rule(PieceTokenizer())
    output = [2, 3, 5, 6]  # "Paris" ".\n" "Question" " "
    assert first_done(stop, output) == 2
    assert stop.text(output[:2]) == "Paris."


def test_whitespace_before_the_answer_does_not_stop_it():
    stop = rule(PieceTokenizer())
    output = [4, 6, 7, 2, 4, 5]  # "\n\n" " " "\nThe" "Paris" "\n\n" "Question"
    assert first_done(stop, output) == 5
    assert stop.text(output[:5]) == "TheParis"


def test_bytes_stop_at_the_newline_after_the_answer():
    stop = rule(byte_tokenizer())
    output = byte_ids("\n Paris\nQuestion: x")
    assert first_done(stop, output) == len(byte_ids("\n Paris\n"))
    assert stop.text(output[: len(byte_ids("\n Paris\n"))]) == "Paris"


def test_a_multi_byte_character_counts_as_answer_text():
    """'é' is two bytes that decode to nothing on their own: the rule reads the whole text."""
    stop = rule(byte_tokenizer())
    output = byte_ids("é\nx")
    assert first_done(stop, output) == 3
    assert stop.text(output[:3]) == "é"


def test_eos_and_the_limit_still_end_an_answer():
    stop = rule(byte_tokenizer(), limit=4)
    assert first_done(stop, [*byte_ids("ab"), 1, 5]) == 3
    assert first_done(stop, byte_ids("abcdef")) == 4
    assert stop.text([*byte_ids(" ab "), 1]) == "ab"


def test_the_rule_switched_off_keeps_newlines_in_the_answer():
    stop = rule(byte_tokenizer(), newline=False)
    output = byte_ids("Paris\nQ")
    assert first_done(stop, output) is None
    assert stop.text(output) == "Paris\nQ"


def test_text_rules():
    assert ends_answer("Paris\n")
    assert ends_answer(" \n Paris.\nQ")
    assert not ends_answer("\n \n")
    assert not ends_answer("\nParis")
    assert cut_answer("\n Paris is.\n\nThe answer") == "Paris is."
    assert cut_answer("  Paris  ") == "Paris"


class Utf8PieceTokenizer(PieceTokenizer):
    """Decodes like a byte-level BPE: a character cut in half becomes U+FFFD."""

    PIECES = ["<pad>", "</s>", "東京", "\ufffd", "\n"]


def test_a_character_cut_by_the_limit_is_dropped_from_the_text():
    stop = rule(Utf8PieceTokenizer(), limit=2)
    assert first_done(stop, [2, 3, 3]) == 2
    assert stop.text([2, 3]) == "東京"
    assert cut_answer("東京\ufffd\nx") == "東京"
    assert rule(Utf8PieceTokenizer(), newline=False).text([2, 3]) == "東京"
