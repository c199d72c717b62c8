"""The paired comparisons at the top of ``docs/results.md`` ("Where we stand"), from the
evaluation records alone.

For each model's run directory (``textgenshap eval --out DIR``: its ``results.jsonl``) and
each pair (method, baseline): the mean per-question difference with its bootstrap 95%
interval, over the questions where both have a value, for gold recall@1 (expected under
random ties), the drop in log p(y) when the top 2 and top 3 documents leave, keep@1 (the
top document alone gives y: sufficiency, where removal reads necessity), LDS against
log p(y), and seconds. The same numbers as ``textgenshap eval --summarize-only --baseline
B`` (``worker.evaluation.report.summarize``), collected in one table.

    .venv/bin/python bench/standing.py gemma-3-270m=docs/results/nq10-gemma-layered128 \\
        smollm2-135m=docs/results/nq10-smollm2-layered128 [--write docs/results.md] \\
        [--plot docs/results_faithfulness.png]

Also the same pairs on the two strata of questions the model answers correctly (with the
full context; from the gold passage alone), and each method's own means (the table under
"## NQ-10 at today's default"). ``--write``
replaces both tables in that file (and the N in the first section's title) and leaves the
prose to whoever reads the new numbers; with ``--section TITLE`` it writes the paired table
and the means under that section instead (another run's, such as NQ-20's).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from worker.evaluation.report import summarize  # noqa: E402

PAIRS = (
    ("shapley", "loo", "Shapley (default) minus leave-one-out"),
    ("shapley", "contextcite-engine-64", "Shapley (default) minus ContextCite-64"),
    ("banzhaf-logprob-32", "loo", "`banzhaf` at 32 minus leave-one-out"),
    ("banzhaf-logprob-32", "contextcite-engine-64", "`banzhaf` at 32 minus ContextCite-64"),
    ("banzhaf-logprob-32", "shapley", "`banzhaf` at 32 minus Shapley (default)"),
    ("contextcite-engine-64", "loo", "ContextCite-64 minus leave-one-out"),
)
COLUMNS = (("recall@1", 2), ("drop@2", 2), ("drop@3", 2), ("keep@1", 2), ("lds_logp", 2))
MEANS = (
    ("loo", "leave-one-out"),
    ("shapley", "shapley (default)"),
    ("contextcite-engine-64", "ContextCite-64 (our engine)"),
    ("banzhaf-logprob-32", "`banzhaf-logprob-32`"),
)
MEANS_HEADER = (
    "| model | method | N | gold recall@1 | drop@2 | drop@3 | keep@1 | LDS (log p) | seconds |\n"
    "|---|---|---|---|---|---|---|---|---|"
)
STRATA_SHOWN = ("full_correct", "gold_only_correct")
STRATUM_NAMES = {
    "full_correct": "correct with the full context",
    "gold_only_correct": "correct from the gold passage alone",
}
STRATA_HEADER = (
    "| model | stratum | method minus | N | gold recall@1 | drop@2 | drop@3 | keep@1 "
    "| LDS (log p) | seconds |\n|---|---|---|---|---|---|---|---|---|---|"
)
HEADER = (
    "| model | method minus | N | gold recall@1 | drop@2 | drop@3 | keep@1 | LDS (log p) "
    "| seconds |\n|---|---|---|---|---|---|---|---|---|"
)


def cell(stats: dict[str, Any], digits: int) -> str:
    if stats.get("mean") is None:
        return "-"
    low, high = stats.get("low"), stats.get("high")
    mean = f"{stats['mean']:.{digits}f}"
    return mean if low is None else f"{mean} [{low:.{digits}f}, {high:.{digits}f}]"


def rows(model: str, records: list[dict[str, Any]]) -> list[str]:
    """One table row per pair whose two methods the records hold."""
    out = []
    for label, n, diff in differences(records):
        cells = [cell(diff[key], digits) for key, digits in (*COLUMNS, ("seconds", 0))]
        out.append(f"| {model} | {label} | {n} | {' | '.join(cells)} |")
    return out


def differences(
    records: list[dict[str, Any]], stratum: str = "all"
) -> list[tuple[str, int, dict[str, dict[str, Any]]]]:
    """(label, N, the paired differences by metric) for every pair the records hold, on
    one stratum of ``worker.evaluation.report.STRATA``."""
    by_baseline = {  # one bootstrap per baseline, not one per pair
        baseline: summarize(records, baseline=baseline)["strata"][stratum]["paired"]
        for baseline in {baseline for _, baseline, _ in PAIRS}
    }
    out = []
    for method, baseline, label in PAIRS:
        paired = by_baseline[baseline]
        if method in paired and paired[method]["difference"]["drop@2"]["n"]:
            diff = paired[method]["difference"]
            out.append((label, diff["drop@2"]["n"], diff))
    return out


def strata_rows(model: str, records: list[dict[str, Any]]) -> list[str]:
    """The paired rows again on each stratum but "every question" (the first table's)."""
    out = []
    for stratum in STRATA_SHOWN:
        for label, n, diff in differences(records, stratum):
            cells = [cell(diff[key], digits) for key, digits in (*COLUMNS, ("seconds", 0))]
            name = STRATUM_NAMES[stratum]
            out.append(f"| {model} | {name} | {label} | {n} | {' | '.join(cells)} |")
    return out


def plot(runs: list[tuple[str, list[dict[str, Any]]]], path: Path) -> None:
    """A forest plot of the table: per model and metric, each pair's mean difference with
    its 95% interval and N, a line at 0 (no difference)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    titles = {"recall@1": "gold recall@1", "drop@2": "drop@2 (nats)"}
    titles |= {"drop@3": "drop@3 (nats)", "keep@1": "keep@1", "lds_logp": "LDS (log p)"}
    fig, axes = plt.subplots(
        len(runs), len(COLUMNS), figsize=(4.2 * len(COLUMNS), 0.5 + 0.55 * len(PAIRS) * len(runs))
    )
    for row, (model, records) in enumerate(runs):
        found = differences(records)
        for col, (metric, _) in enumerate(COLUMNS):
            ax = axes[row][col] if len(runs) > 1 else axes[col]
            for y, (_, _, diff) in enumerate(found):
                stats = diff[metric]
                if stats["mean"] is None:
                    continue
                err = [[stats["mean"] - stats["low"]], [stats["high"] - stats["mean"]]]
                ax.errorbar([stats["mean"]], [y], xerr=err, fmt="o", capsize=3, color="C0")
            ax.axvline(0.0, color="grey", lw=0.8)
            names = [f"{label.replace('`', '')} (N={n})" for label, n, _ in found]
            ax.set_yticks(range(len(found)), names if col == 0 else [], fontsize=7)
            ax.invert_yaxis()
            ax.set_title(f"{model}: {titles[metric]}", fontsize=9)
            ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def mean_rows(model: str, records: list[dict[str, Any]]) -> list[str]:
    """Each method's own means with their intervals (section "NQ-10 at today's default")."""
    methods = summarize(records)["strata"]["all"]["methods"]
    out = []
    for method, label in MEANS:
        if method not in methods:
            continue
        stats = methods[method]
        cells = [cell(stats[key], digits) for key, digits in (*COLUMNS, ("seconds", 0))]
        out.append(f"| {model} | {label} | {stats['drop@2']['n']} | {' | '.join(cells)} |")
    return out


def load(directory: Path) -> list[dict[str, Any]]:
    """The run's records; a last line still being written by a running evaluation is
    left out."""
    lines = [line for line in (directory / "results.jsonl").read_text().splitlines() if line]
    records = []
    for number, line in enumerate(lines):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if number < len(lines) - 1:
                raise
    return records


def table(runs: list[tuple[str, list[dict[str, Any]]]]) -> str:
    body = [row for model, records in runs for row in rows(model, records)]
    return "\n".join([HEADER, *body])


def means_table(runs: list[tuple[str, list[dict[str, Any]]]]) -> str:
    body = [row for model, records in runs for row in mean_rows(model, records)]
    return "\n".join([MEANS_HEADER, *body])


def strata_table(runs: list[tuple[str, list[dict[str, Any]]]]) -> str:
    body = [row for model, records in runs for row in strata_rows(model, records)]
    return "\n".join([STRATA_HEADER, *body])


def _swap(text: str, section: str, first_line: str, new_table: str) -> str:
    """``text`` with the table starting ``first_line`` under ``section`` replaced."""
    begin = text.index(first_line, text.index(section))
    end = text.index("\n\n", begin)
    return text[:begin] + new_table + text[end:]


def write_section(path: Path, heading: str, runs: list[tuple[str, list[dict[str, Any]]]]) -> None:
    """Under the section whose title starts ``heading`` (another run's, such as NQ-20's):
    the paired table, the table of means and the paired table by stratum, each swapped
    where the section has one (before the next section) and otherwise added at its end."""
    text = path.read_text()
    start = text.index(heading)
    after = text.find("\n## ", start + 1)
    end = len(text) if after < 0 else after + 1  # the section keeps its blank last line
    body = text[start:end].rstrip("\n") + "\n\n"
    for first_line, new in (
        ("| model | method minus |", table(runs)),
        ("| model | method | N |", means_table(runs)),
        ("| model | stratum |", strata_table(runs)),
    ):
        found = first_line in body
        body = _swap(body, heading, first_line, new) if found else body + new + "\n\n"
    tail = text[end:]
    path.write_text(text[:start] + (body if tail else body.rstrip("\n") + "\n") + tail)


def write(path: Path, new_table: str, runs: list[tuple[str, list[dict[str, Any]]]]) -> None:
    """Swap the first table under "## Where we stand" for ``new_table``, the N in the
    section's title for the runs' question counts, the table by stratum under it (where the
    page has one) and the table of means under "## NQ-10 at today's default"."""
    means = means_table(runs)
    text = _swap(path.read_text(), "## NQ-10 at today's default", "| model | method |", means)
    text = _swap(text, "## Where we stand", "| model | method minus |", new_table)
    if "| model | stratum | method minus |" in text:
        strata = strata_table(runs)
        text = _swap(text, "## Where we stand", "| model | stratum | method minus |", strata)
    start = text.index("## Where we stand")
    counts = ", ".join(f"{len(records)} {model.split('-')[0]}" for model, records in runs)
    title_end = text.index("\n", start)
    title = re.sub(r"N = [^)]*", f"N = {counts} of the 100 per model", text[start:title_end])
    path.write_text(text[:start] + title + text[title_end:])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="MODEL=DIR of a textgenshap eval run")
    parser.add_argument("--write", type=Path, help="replace the table in this markdown file")
    parser.add_argument("--plot", type=Path, help="also draw the paired table (PNG; matplotlib)")
    parser.add_argument(
        "--section", help="with --write: the tables go under this section's title instead"
    )
    args = parser.parse_args()
    runs = [(spec.split("=", 1)[0], load(Path(spec.split("=", 1)[1]))) for spec in args.runs]
    new_table = table(runs)
    print(new_table, strata_table(runs), means_table(runs), sep="\n\n")
    if args.write and args.section:
        write_section(args.write, args.section, runs)
    elif args.write:
        write(args.write, new_table, runs)
    if args.plot:
        plot(runs, args.plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
