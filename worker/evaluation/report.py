"""Tables from the per-question records of :mod:`worker.evaluation.runner`, recomputed from
the records alone (``textgenshap eval --summarize-only``).

Per question and method: expected recall@k under random ties, the drop in ``log p(y)`` and
the flip of the greedy answer when the top-k documents are removed, whether the answer
stays ``y`` when only they are kept, and the LDS against ``log p(y)`` and against
``1[answer = y]``. Per stratum (every question; those answered correctly with the full
context; those answered correctly from the gold passage alone) each metric's mean carries a
bootstrap 95% interval and N, and every method is compared with a baseline on the same
questions: mean difference with its interval, and an exact sign test for recall@1.
Answers are compared after QA normalisation (case, punctuation, articles, whitespace).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from worker.evaluation import faithfulness, metrics, paired

Record = dict[str, Any]
STRATA: dict[str, Callable[[Record], bool]] = {
    "all": lambda r: True,
    "full_correct": lambda r: r.get("full_correct") is True,
    "gold_only_correct": lambda r: r.get("gold_only_correct") is True,
}
STRATUM_TITLES = {
    "all": "every question",
    "full_correct": "questions the model answers correctly with the full context",
    "gold_only_correct": "questions the model answers correctly from the gold passage alone",
}


def _same(a: str | None, b: str) -> bool | None:
    return None if a is None else metrics.normalize_answer(a) == metrics.normalize_answer(b)


def _check(record: Record, mask: Any) -> dict[str, Any]:
    return dict(record["coalitions"][faithfulness.mask_key(mask)])


def question_metrics(record: Record, method: str, ks: Sequence[int] = (1, 2, 3)) -> dict[str, Any]:
    """Every metric of one method on one question (None where undefined)."""
    run = record["methods"][method]
    scores, n, y = run["scores"], record["n_documents"], record["full_answer"]
    full_logp = record["coalitions"]["1" * n]["logp"]
    top = faithfulness.top_documents(scores, record["tie_priority"])
    out: dict[str, Any] = {}
    for k in (1, 3, 5):
        out[f"recall@{k}"] = paired.expected_recall_at_k(scores, record["relevant"], k)
    for k in ks:
        if k >= n:
            continue
        removed = _check(record, faithfulness.removal_mask(n, top, k))
        kept = _check(record, faithfulness.keep_mask(n, top, k))
        drop = None if full_logp is None or removed["logp"] is None else full_logp - removed["logp"]
        stays = _same(removed["answer"], y)
        out[f"drop@{k}"] = drop
        out[f"flip@{k}"] = None if stays is None else not stays
        out[f"keep@{k}"] = _same(kept["answer"], y)
    masks = [faithfulness.from_key(key) for key in record["heldout"]]
    held = [record["coalitions"][key] for key in record["heldout"]]
    logps = [h["logp"] for h in held]
    if masks and all(v is not None for v in logps):
        out["lds_logp"] = faithfulness.lds(scores, np.stack(masks), logps)
    else:
        out["lds_logp"] = None
    same = [float(bool(_same(h["answer"], y))) for h in held]
    out["lds_answer"] = faithfulness.lds(scores, np.stack(masks), same) if masks else None
    out["seconds"] = run["seconds"]
    out["coalitions"] = run["coalitions"]
    out["forward_passes"] = run["forward_passes"]
    return out


def _as_float(value: Any) -> float | None:
    return None if value is None else float(value)


def method_names(records: Sequence[Record]) -> list[str]:
    names: list[str] = []
    for r in records:
        names += [m for m in r.get("methods", {}) if m not in names]
    return names


def _table(records: Sequence[Record], methods: list[str]) -> dict[str, dict[str, list[Any]]]:
    """metric values per method, aligned by question (None where a method did not run);
    a method that ran on none of ``records`` (added to a run later) has no column."""
    table: dict[str, dict[str, list[Any]]] = {}
    for method in methods:
        if not any(method in r["methods"] for r in records):
            continue
        rows = [question_metrics(r, method) if method in r["methods"] else {} for r in records]
        keys = sorted({k for row in rows for k in row})
        table[method] = {k: [_as_float(row.get(k)) for row in rows] for k in keys}
    return table


def _stratum(records: Sequence[Record], methods: list[str], baseline: str) -> dict[str, Any]:
    table = _table(records, methods)
    out: dict[str, Any] = {"n": len(records), "methods": {}, "paired": {}, "baseline": baseline}
    for method, columns in table.items():
        out["methods"][method] = {
            k: paired.bootstrap_mean([v for v in vals if v is not None]).as_json()
            for k, vals in columns.items()
        }
    base = table.get(baseline)
    if base is None:
        return out
    for method, columns in table.items():
        if method == baseline:
            continue
        diffs = {
            k: paired.paired_difference(vals, base.get(k, [None] * len(vals))).as_json()
            for k, vals in columns.items()
        }
        sign = paired.sign_test(columns.get("recall@1", []), base.get("recall@1", []))
        out["paired"][method] = {"difference": diffs, "sign_test_recall@1": sign.as_json()}
    return out


def harness_seconds(record: Record) -> float:
    """The harness's own seconds. Records written before ``harness_seconds_once`` subtracted
    the seconds of a job shared by ``shapley`` and ``shapley-answer`` (and Banzhaf's) twice;
    the shared job's seconds are added back once for them."""
    seconds = float(record["harness_seconds"])
    if record.get("harness_seconds_once"):
        return seconds
    methods = record["methods"]
    for name in ("shapley", "banzhaf"):
        if name in methods and f"{name}-answer" in methods:
            seconds += float(methods[name]["seconds"])
    return seconds


def _context_group(records: Sequence[Record], method: str) -> dict[str, Any]:
    """Abstention and how concentrated ``method``'s positive mass is, for MIRACL's labels."""
    concs = [
        metrics.concentration(r["methods"][method]["scores"]) if method in r["methods"] else None
        for r in records
    ]
    return {
        "n": len(records),
        "abstention": paired.bootstrap_mean(
            [float(metrics.is_abstention(r["full_answer"])) for r in records]
        ).as_json(),
        "entropy": paired.bootstrap_mean([c.entropy for c in concs if c]).as_json(),
        "top1_share": paired.bootstrap_mean([c.top1_share for c in concs if c]).as_json(),
    }


def by_language(records: Sequence[Record], method: str = "shapley-answer") -> dict[str, Any]:
    """Per language: every question, then by MIRACL's context label where there is one."""
    out: dict[str, Any] = {}
    for lang in sorted({str(r.get("lang", "en")) for r in records}):
        group = [r for r in records if str(r.get("lang", "en")) == lang]
        out[lang] = {"all": _context_group(group, method)}
        for label, value in (("relevant", True), ("not_relevant", False)):
            labelled = [r for r in group if r.get("context_relevant") is value]
            if labelled:
                out[lang][label] = _context_group(labelled, method)
    return out


def summarize(records: Sequence[Record], baseline: str = "loo") -> dict[str, Any]:
    """Every table of the report as JSON; records with an ``error`` are counted only."""
    ok = [r for r in records if "error" not in r and r.get("schema") == 2]
    methods = method_names(ok)
    unavailable: dict[str, dict[str, int]] = {}
    for r in ok:
        for method, why in r.get("unavailable", {}).items():
            unavailable.setdefault(method, {}).setdefault(why, 0)
            unavailable[method][why] += 1
    return {
        "n": len(ok),
        "errors": len(records) - len(ok),
        "accuracy": {
            "full_context": paired.bootstrap_mean(
                [float(r["full_correct"]) for r in ok if r["full_correct"] is not None]
            ).as_json(),
            "gold_only": paired.bootstrap_mean(
                [float(r["gold_only_correct"]) for r in ok if r["gold_only_correct"] is not None]
            ).as_json(),
            "abstained": paired.bootstrap_mean(
                [float(metrics.is_abstention(r["full_answer"])) for r in ok]
            ).as_json(),
        },
        "harness_seconds": paired.bootstrap_mean([harness_seconds(r) for r in ok]).as_json(),
        "unavailable": unavailable,
        "by_lang": by_language(ok),
        "strata": {
            name: _stratum([r for r in ok if keep(r)], methods, baseline)
            for name, keep in STRATA.items()
        },
    }


def _cell(interval: dict[str, Any] | None, digits: int = 2) -> str:
    if not interval or interval["mean"] is None:
        return "–"
    mean = f"{interval['mean']:.{digits}f}"
    if interval["low"] is None:
        return f"{mean} (n={interval['n']})"
    return f"{mean} [{interval['low']:.{digits}f}, {interval['high']:.{digits}f}]"


def _rows(head: list[str], body: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return lines + ["| " + " | ".join(row) + " |" for row in body]


QUALITY = ["recall@1", "recall@3", "lds_logp", "lds_answer", "seconds", "coalitions"]
CHECKS = ["drop@1", "drop@2", "drop@3", "flip@1", "flip@2", "flip@3", "keep@1", "keep@2", "keep@3"]


def _n_cell(stats: dict[str, Any], metric: str) -> str:
    return str(stats.get(metric, {}).get("n", 0))


def stratum_markdown(name: str, stratum: dict[str, Any]) -> list[str]:
    """Three tables for one stratum: quality and cost, removal/keep checks, paired."""
    lines = [f"### {STRATUM_TITLES[name]} (N = {stratum['n']})", ""]
    methods = stratum["methods"]
    body = [
        [m, _n_cell(s, "recall@1"), *[_cell(s.get(k), 2 if k != "seconds" else 1) for k in QUALITY]]
        for m, s in methods.items()
    ]
    lines += _rows(["method", "N (recall)", *QUALITY], body) + [""]
    body = [[m, *[_cell(s.get(k)) for k in CHECKS]] for m, s in methods.items()]
    lines += _rows(["method", *CHECKS], body) + [""]
    if stratum["paired"]:
        lines += [
            f"Paired with `{stratum['baseline']}` on the same questions (method minus it):",
            "",
        ]
        head = ["method", "Δrecall@1", "sign test (W/L/T, p)", "Δdrop@1", "Δdrop@2", "Δdrop@3"]
        head += ["Δflip@1", "Δkeep@1", "Δlds_logp", "Δseconds"]
        body = []
        for m, p in stratum["paired"].items():
            d, s = p["difference"], p["sign_test_recall@1"]
            pv = "–" if s["p_value"] is None else f"{s['p_value']:.3f}"
            keys = ["drop@1", "drop@2", "drop@3", "flip@1", "keep@1", "lds_logp", "seconds"]
            body.append(
                [m, _cell(d.get("recall@1")), f"{s['wins']}/{s['losses']}/{s['ties']}, {pv}"]
                + [_cell(d.get(k)) for k in keys]
            )
        lines += _rows(head, body) + [""]
    return lines


def _language_markdown(by_lang: dict[str, Any]) -> list[str]:
    head = ["lang", "context", "N", "abstention", "entropy", "top-1 share"]
    body = [
        [
            lang,
            label,
            str(g["n"]),
            _cell(g["abstention"]),
            _cell(g["entropy"]),
            _cell(g["top1_share"]),
        ]
        for lang, groups in by_lang.items()
        for label, g in groups.items()
    ]
    title = "### By language and context label (concentration of shapley-answer's positive mass)"
    return [title, "", *_rows(head, body), ""]


def to_markdown(summary: dict[str, Any], title: str) -> str:
    """The report: accuracy, then every stratum's tables."""
    acc = summary["accuracy"]
    lines = [f"## {title}", "", f"Questions: {summary['n']} (errors: {summary['errors']})", ""]
    lines += [
        f"Accuracy with the full context {_cell(acc['full_context'])} (N = "
        f"{acc['full_context']['n']}); from the gold passage alone {_cell(acc['gold_only'])}; "
        f"abstained {_cell(acc['abstained'])}. Harness seconds per question (checks and "
        f"held-out coalitions, beyond the methods' own): {_cell(summary['harness_seconds'], 1)}.",
        "",
    ]
    for method, reasons in summary["unavailable"].items():
        for why, count in reasons.items():
            lines += [f"- `{method}` did not run on {count} questions: {why}"]
    if summary["unavailable"]:
        lines.append("")
    for name, stratum in summary["strata"].items():
        lines += stratum_markdown(name, stratum)
    lines += _language_markdown(summary["by_lang"])
    return "\n".join(lines) + "\n"
