"""Aggregate per-question records into a JSON summary and a Markdown table.

Means skip missing values (a question with no known relevant passage has no recall; a
MIRACL question has no gold answer), and every mean carries the count it was taken over.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from worker.evaluation import metrics

Record = dict[str, Any]


def mean(values: Iterable[float | bool | None]) -> dict[str, Any]:
    """``{"mean", "n"}`` over the values that are not None (mean None when n == 0)."""
    kept = [float(v) for v in values if v is not None]
    return {"mean": sum(kept) / len(kept) if kept else None, "n": len(kept)}


def _method_names(records: Sequence[Record]) -> list[str]:
    names: list[str] = []
    for r in records:
        names += [m for m in r.get("methods", {}) if m not in names]
    return names


def _method_summary(records: Sequence[Record], method: str, ks: Sequence[str]) -> dict[str, Any]:
    runs = [r["methods"][method] for r in records if method in r.get("methods", {})]
    return {
        "recall": {k: mean(run["recall"].get(k) for run in runs) for k in ks},
        "seconds": mean(run["seconds"] for run in runs),
        "coalitions": mean(run["coalitions"] for run in runs),
        "forward_passes": mean(run["forward_passes"] for run in runs),
    }


def _explanation(record: Record, key: str) -> Any:
    return (record.get("explanation") or {}).get(key)


def _concentration(record: Record, key: str) -> float | None:
    conc = _explanation(record, "concentration")
    return None if conc is None else conc[key]


def _abstained(record: Record) -> bool:
    """Judged from the stored answer with today's phrase list, so that runs made before a
    phrase was added are summarised by the same rule as new ones."""
    if "full_answer" in record:
        return metrics.is_abstention(record["full_answer"])
    return bool(record["abstained"])


def _group(records: Sequence[Record]) -> dict[str, Any]:
    """Abstention and concentration for one group of questions."""
    return {
        "n": len(records),
        "abstention": mean(_abstained(r) for r in records),
        "entropy": mean(_concentration(r, "entropy") for r in records),
        "top1_share": mean(_concentration(r, "top1_share") for r in records),
    }


def _split(records: Sequence[Record], key: Callable[[Record], Any]) -> dict[str, list[Record]]:
    groups: dict[str, list[Record]] = {}
    for r in records:
        groups.setdefault(str(key(r)), []).append(r)
    return groups


def _context_groups(records: Sequence[Record]) -> dict[str, Any]:
    labelled = [r for r in records if r.get("context_relevant") is not None]
    by_label = _split(labelled, lambda r: "relevant" if r["context_relevant"] else "not_relevant")
    return {"all": _group(records)} | {k: _group(v) for k, v in sorted(by_label.items())}


def summarize(records: Sequence[Record], ks: Sequence[int] = (1, 3, 5)) -> dict[str, Any]:
    """The run's figures; ``records`` with an ``error`` are counted, not scored."""
    ok = [r for r in records if "error" not in r]
    keys = [str(k) for k in ks]
    return {
        "n": len(ok),
        "errors": len(records) - len(ok),
        "accuracy": {
            "full_context": mean(r["full_correct"] for r in ok),
            "top_candidate": mean(_explanation(r, "top_correct") for r in ok),
        },
        "methods": {m: _method_summary(ok, m, keys) for m in _method_names(ok)},
        "offsets_ok": mean(_explanation(r, "offsets_ok") for r in ok),
        "context": _context_groups(ok),
        "by_lang": {
            lang: _context_groups(group) for lang, group in sorted(_split(ok, _lang).items())
        },
    }


def _lang(record: Record) -> str:
    return str(record.get("lang", "en"))


def _fmt(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _methods_table(summary: dict[str, Any]) -> list[str]:
    ks = next(iter(summary["methods"].values()))["recall"].keys() if summary["methods"] else []
    head = ["method", *[f"recall@{k}" for k in ks], "s/question", "coalitions", "fwd passes"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, m in summary["methods"].items():
        cells = [name, *[_fmt(m["recall"][k]["mean"]) for k in ks]]
        cells += [_fmt(m["seconds"]["mean"], 2), _fmt(m["coalitions"]["mean"], 1)]
        cells += [_fmt(m["forward_passes"]["mean"], 1)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _context_table(summary: dict[str, Any]) -> list[str]:
    head = ["lang", "context", "n", "abstention", "entropy", "top-1 share"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for lang, groups in summary["by_lang"].items():
        for label, g in groups.items():
            cells = [lang, label, str(g["n"]), _fmt(g["abstention"]["mean"])]
            cells += [_fmt(g["entropy"]["mean"]), _fmt(g["top1_share"]["mean"])]
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def to_markdown(summary: dict[str, Any], title: str = "Evaluation") -> str:
    """A human-readable report of :func:`summarize`'s output."""
    acc = summary["accuracy"]
    lines = [f"## {title}", "", f"Questions: {summary['n']} (errors: {summary['errors']})", ""]
    lines += [
        f"Answer accuracy: full context {_fmt(acc['full_context']['mean'])} "
        f"(n={acc['full_context']['n']}), top explained candidate "
        f"{_fmt(acc['top_candidate']['mean'])} (n={acc['top_candidate']['n']})",
        "",
        *_methods_table(summary),
        "",
        *_context_table(summary),
        "",
        f"Feature offsets exact: {_fmt(summary['offsets_ok']['mean'])} "
        f"(n={summary['offsets_ok']['n']})",
    ]
    return "\n".join(lines) + "\n"
