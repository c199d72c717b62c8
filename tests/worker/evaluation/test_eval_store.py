"""The resumable JSONL store."""

from pathlib import Path

from worker.evaluation.store import ResultStore


def test_append_then_read_back(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "out" / "results.jsonl")
    assert store.records() == []
    store.append({"id": "a", "x": 1})
    store.append({"id": "b", "x": "ü"})
    assert store.records() == [{"id": "a", "x": 1}, {"id": "b", "x": "ü"}]
    assert store.done_ids() == {"a", "b"}


def test_torn_last_line_is_ignored_and_mended(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    path.write_text('{"id": "a"}\n{"id": "b", "x"')
    store = ResultStore(path)
    assert store.done_ids() == {"a"}
    store.append({"id": "c"})
    assert store.done_ids() == {"a", "c"}
    assert path.read_text().splitlines()[-1] == '{"id": "c"}'
