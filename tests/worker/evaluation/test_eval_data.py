"""Loading NQ and MIRACL slices (real lines of shared/data) and qrels."""

from pathlib import Path

import pytest

from worker.evaluation.data import load_examples, load_qrels, parse_example

DATA = Path(__file__).parent / "data"
NQ = DATA / "nq-10docs-6.jsonl.gz"
MIRACL = DATA / "miracl-7langs-14.jsonl.gz"
LANGS = ["en", "de", "es", "zh", "ja", "ar", "sw"]


def test_nq_examples_carry_gold_passage_and_answers() -> None:
    examples = load_examples(NQ)
    assert len(examples) == 6
    first = examples[0]
    assert first.id == "16e1d23474b9"
    assert first.question == "who got the first nobel prize in physics"
    assert first.answers == ("Wilhelm Conrad Röntgen",)
    assert len(first.documents) == 10
    assert first.relevant == frozenset({9})
    assert first.documents[1].title == "Computer simulation"
    assert first.context_relevant is None
    for example in examples:
        assert len(example.relevant) == 1
        (gold,) = example.relevant
        assert any(a.lower() in example.documents[gold].text.lower() for a in example.answers)


def test_limit_takes_the_first_questions_in_file_order() -> None:
    assert [e.id for e in load_examples(NQ, limit=2)] == [e.id for e in load_examples(NQ)[:2]]


def test_miracl_examples_have_languages_labels_and_docids() -> None:
    examples = load_examples(MIRACL)
    assert [e.lang for e in examples] == [x for x in LANGS for _ in (0, 1)]
    assert [e.context_relevant for e in examples] == [True, False] * 7
    for example in examples:
        assert len(example.documents) == 10
        assert len(example.docids) == 10
        assert example.answers == ()
        assert example.relevant == frozenset()


def test_qrels_mark_relevant_passages_by_docid(tmp_path: Path) -> None:
    qrels_file = tmp_path / "qrels.txt"
    qrels_file.write_text("q1 Q0 d2 1\nq1\tQ0\td3\t0\n\nq1 Q0 d4 2\nq2 Q0 d1 1\n")
    qrels = load_qrels(qrels_file)
    assert qrels == {"q1": {"d2": 1, "d3": 0, "d4": 2}, "q2": {"d1": 1}}
    obj = {
        "id": "q1",
        "question": "?",
        "documents": [{"title": "", "text": t} for t in "abcde"],
        "docids": ["d0", "d1", "d2", "d3", "d4"],
    }
    assert parse_example(obj, qrels).relevant == frozenset({2, 4})
    assert parse_example(obj).relevant == frozenset()


def test_qrels_reject_malformed_lines(tmp_path: Path) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_text("q1 d2 1\n")
    with pytest.raises(ValueError, match="bad.txt:1"):
        load_qrels(bad)


def test_per_label_takes_the_first_of_each_label() -> None:
    examples = load_examples(MIRACL, per_label=2)
    assert [e.context_relevant for e in examples] == [True, False, True, False]
    assert [e.lang for e in examples] == ["en", "en", "de", "de"]
    assert [e.id for e in load_examples(NQ, per_label=2)] == [e.id for e in load_examples(NQ)[:2]]
