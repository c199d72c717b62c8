"""Accuracy against cost of every document-level estimator, on games whose exact values are
known: the recorded tables of ``bench/exact_vs_loo.py`` (every coalition of NQ questions cut
to n = 6 or 8 documents evaluated once on the real models: log p(y | S) of the full-context
answer y, and the greedy answer of S).

No model runs here. Each estimator reads the same recorded table, so every method plays the
same game on the same target, and the differences are the estimators' alone:

- ``ours-<estimator>``: ``worker.shapley.estimate`` at several budgets (``auto`` is what the
  service runs; below 2^n coalitions it samples), ``--repeats`` seeds per question
  (seeds from the question id, so no two questions share coalitions);
- ``loo``: leave-one-out, v(N) - v(N without i) (n + 1 coalitions);
- ``contextcite-k``: ContextCite's surrogate (Cohen-Wang et al., 2024): a Lasso (alpha 0.01,
  as its package) from the keep-mask to the value over k random ablations, each document
  kept with probability 1/2; fitted on the same log p(y) game as everything else.
  ``contextcite-package-64`` is the package's own 64 ablations (it seeds ablation i with
  i, so every question with n documents gets the same ones, as in the NQ runs): is the
  fixed design better or worse than a random one?

- ``ours-banzhaf`` / ``ours-banzhaf-msr``: the service's ``method: banzhaf`` (least squares
  on uniform coalitions from ``2 (n + 3)`` draws, a Lasso on them below) and the MSR sampler
  it replaced, scored like the rest and also against the exact Banzhaf values
  (``Spearman (Banzhaf)``), with ``exact-banzhaf`` (every coalition) as their reference:
  LDS asks for the best additive fit on uniform coalitions, whose coefficients are the
  Banzhaf values; ``ours-banzhaf-ols@b`` is the least-squares fit where it is identified
  (n + 1 pairs) but ``auto`` runs the Lasso (short of ``regression_draws``);
- ``exact-shapley``: the reference itself (Spearman 1 by construction), for its LDS and
  removal drops: the estimand's own level, which no Shapley estimator exceeds in
  expectation.

``ours-layered`` is the estimator ``layered`` (``worker/shapley/layered.py``), first measured
here as a prototype of this script (rows ``layered-kernel`` in the committed summary).

Error is measured against the exact Shapley values of the game (all 2^n coalitions):
Spearman correlation, top-1 agreement (the method's top document is one of the exact top
documents), and the top-3 overlap. Cost is in coalitions; "s" multiplies them by the engine's
own seconds per coalition on that question (the recorded table's time / 2^n): a coalition
costs every method the same there, because they all run through the same batched engine.
With ``--fast`` (the tables' fast-mode twins, ``exact_vs_loo.py --fast``) fast-mode
estimators are priced at the fast table's seconds per coalition and scored against the
exact values; ``cv-fast+auto@b`` pays the whole fast table plus b exact coalitions.
Games: ``logprob`` (log p(y | S)) and ``answer`` (1 when S's greedy answer is y after QA
normalisation). Means over questions with bootstrap 95% intervals.

    .venv/bin/python bench/estimator_curve.py --records docs/results/exact-vs-loo/rows.jsonl
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.exact_tables import exact_banzhaf, exact_shapley, leave_one_out, table_of  # noqa: E402
from bench.measured_cost import CostModel  # noqa: E402
from worker.evaluation.contextcite import (  # noqa: E402
    KEEP_PROBABILITY,
    fit_scores,
    package_masks,
    solver_weights,
)
from worker.evaluation.faithfulness import (  # noqa: E402
    lds,
    mask_key,
    question_seed,
    removal_drop,
    spearman,
    tie_order,
)
from worker.evaluation.paired import bootstrap_mean, paired_difference  # noqa: E402
from worker.shapley.banzhaf import BanzhafRegression, BanzhafSampler  # noqa: E402
from worker.shapley.estimators import estimate, fits, resolve  # noqa: E402
from worker.shapley.game import RealGame  # noqa: E402
from worker.shapley.sampling import Sampler, run_sampler  # noqa: E402

ESTIMATORS = ("auto", "kernel", "layered", "owen", "permutation")
Scores = Callable[[np.random.Generator], tuple[np.ndarray, int]]


def ours(
    table: dict[str, float], n: int, estimator: str, budget: int, method: str = "shapley"
) -> Scores:
    def run(rng: np.random.Generator) -> tuple[np.ndarray, int]:
        game = RealGame(n, lambda masks: [table[mask_key(m)] for m in masks])
        focus = game.outputs[0]  # the column the service would rank by: the only one
        result = estimate(game, method, estimator, budget=budget, seed=rng, focus=focus)
        return result.mean[:, 0], game.evaluations

    return run


def banzhaf_with(table: dict[str, float], n: int, budget: int, sampler: type[Sampler]) -> Scores:
    """One Banzhaf sampler whatever ``auto`` would pick at this budget: MSR, which the
    service ran below the regression before the Lasso, or the regression itself where the
    Lasso runs now (for comparison)."""

    def run(rng: np.random.Generator) -> tuple[np.ndarray, int]:
        game = RealGame(n, lambda masks: [table[mask_key(m)] for m in masks])
        result = run_sampler(game, sampler(), budget, rng)
        return result.mean[:, 0], game.evaluations

    return run


def loo(table: dict[str, float], n: int) -> Scores:
    drops = leave_one_out(table, n)
    return lambda rng: (drops, n + 1)


def contextcite(table: dict[str, float], n: int, ablations: int, game: str, tokens: int) -> Scores:
    """The package's estimator (``worker.evaluation.contextcite``): its output (the logit of
    p(y)) and solver on the log p game; its solver on the 0/1 answer game (one "token").
    Ablations drawn as the package draws them (each document kept with probability 1/2),
    from the bench's seeds so that repeats differ."""

    def run(rng: np.random.Generator) -> tuple[np.ndarray, int]:
        masks = rng.random((ablations, n)) < KEEP_PROBABILITY
        return cite_fit(table, masks, game, tokens), len({mask_key(m) for m in masks})

    return run


def cite_fit(table: dict[str, float], masks: np.ndarray, game: str, tokens: int) -> np.ndarray:
    """The package's estimator on ``masks`` read from the table: its output (the logit of
    p(y)) through its solver on the log p game, its solver alone on the 0/1 answer game."""
    values = np.asarray([table[mask_key(m)] for m in masks])
    if game == "logprob":
        return np.asarray(fit_scores(masks, values, tokens), dtype=float)
    return np.asarray(solver_weights(masks, values, 1), dtype=float)


def contextcite_package(table: dict[str, float], n: int, game: str, tokens: int) -> Scores:
    """ContextCite on the package's own 64 ablations, the same for every question of n
    documents (what the NQ runs' ``contextcite-engine-64`` fitted): one design, no repeats."""
    masks = package_masks(n, 64)
    scores, coalitions = cite_fit(table, masks, game, tokens), len({mask_key(m) for m in masks})
    return lambda rng: (scores, coalitions)


def top_set(scores: np.ndarray) -> set[int]:
    return {int(i) for i in np.flatnonzero(np.isclose(scores, scores.max(), atol=1e-9))}


def agreement(
    scores: np.ndarray, exact: np.ndarray, banzhaf: np.ndarray
) -> dict[str, float | None]:
    """Spearman, top-1 (a method's top document among the exact top ones; a tie at the top
    of the method's own scores counts its share), top-3 overlap with the exact values, and
    the top-1 regret: how far below the exact top value the method's top document's exact
    value lies, over the exact values' range; and Spearman with the exact Banzhaf values.
    Top-1 agreement is a coin flip where the exact top two nearly tie; the regret says how
    much such a miss costs."""
    mine = top_set(scores)
    top1 = len(mine & top_set(exact)) / len(mine)
    regret = float(np.mean([exact.max() - exact[i] for i in mine]) / np.ptp(exact))
    order = np.argsort(-exact, kind="stable")[:3]
    guess = np.argsort(-scores, kind="stable")[:3]
    rho = spearman(scores.tolist(), exact.tolist())
    return {
        "spearman": rho,
        "top1": top1,
        "top3": len(set(order) & set(guess)) / 3,
        "regret": regret,
        "banzhaf": spearman(scores.tolist(), banzhaf.tolist()),
    }


Priced = tuple[Scores, float, float]
"""A method, its seconds per coalition it evaluates, and the seconds it pays up front."""
FastTable = tuple[dict[str, float], float]
"""A fast-mode table of the same game and its seconds per coalition."""


def methods(
    table: dict[str, float],
    n: int,
    budgets: list[int],
    per: float,
    fast: FastTable | None,
    cite: tuple[str, int] = ("logprob", 1),
    banzhaf: np.ndarray | None = None,
) -> dict[str, Priced]:
    """Every method on one table; ``cite``: the game and y's token count ContextCite's
    solver divides by; ``banzhaf``: the table's exact Banzhaf values, if known."""
    out: dict[str, Priced] = {"loo": (loo(table, n), per, 0.0)}
    for estimator, budget in itertools.product(ESTIMATORS, budgets):
        if fits(estimator, n, budget):
            out[f"ours-{estimator}@{budget}"] = (ours(table, n, estimator, budget), per, 0.0)
    for k in (8, 16, 32, 64):
        out[f"contextcite-{k}"] = (contextcite(table, n, k, *cite), per, 0.0)
    out["contextcite-package-64"] = (contextcite_package(table, n, *cite), per, 0.0)
    exact = exact_banzhaf(table, n) if banzhaf is None else banzhaf
    out["exact-banzhaf"] = (lambda rng: (exact, 2**n), per, 0.0)
    for budget in budgets:
        if budget < 2**n:
            out[f"ours-banzhaf@{budget}"] = (ours(table, n, "auto", budget, "banzhaf"), per, 0.0)
            msr = banzhaf_with(table, n, budget, BanzhafSampler)
            out[f"ours-banzhaf-msr@{budget}"] = (msr, per, 0.0)
            if resolve("banzhaf", "auto", n, budget) == "banzhaf-lasso" and budget >= 2 * n + 4:
                ols = banzhaf_with(table, n, budget, BanzhafRegression)
                out[f"ours-banzhaf-ols@{budget}"] = (ols, per, 0.0)
    if fast is not None:
        values, fast_per = fast
        whole = fast_per * 2**n  # the whole fast table: its exact values are the base
        out["fast-exact"] = (lambda rng: (exact_shapley(values, n), 2**n), fast_per, 0.0)
        for budget in budgets:
            if fits("auto", n, budget):
                out[f"fast-auto@{budget}"] = (ours(values, n, "auto", budget), fast_per, 0.0)
                out[f"cv-fast+auto@{budget}"] = (controlled(table, values, n, budget), per, whole)
    return out


def controlled(table: dict[str, float], fast: dict[str, float], n: int, budget: int) -> Scores:
    """Fast mode as a control variate (issue 20): the exact Shapley values of the whole
    fast table plus ``auto``'s estimate of the exact-minus-fast game at ``budget`` exact
    coalitions (the estimators are linear in the values, so this is the exact estimate
    minus the fast one on the same coalitions): unbiased where ``auto`` is, and the
    correction's game is small where fast mode is close."""
    base = exact_shapley(fast, n)
    difference = {k: table[k] - fast[k] for k in table}

    def run(rng: np.random.Generator) -> tuple[np.ndarray, int]:
        correction, used = ours(difference, n, "auto", budget)(rng)
        return base + correction, used

    return run


DETERMINISTIC = ("loo", "fast-exact", "contextcite-package-64")
"""Methods without a draw: one row per question, not ``repeats``."""


def rows_for(
    record: dict[str, Any],
    game: str,
    budgets: list[int],
    repeats: int,
    fast: dict | None,
    costs: CostModel | None = None,
    tokens: int = 1,
) -> list[dict]:
    """Every method's agreement with the exact values, repeated over seeds; with ``costs``
    only the measured methods, priced in leave-one-out's seconds."""
    n, table = record["n"], table_of(record, game)
    exact, banzhaf = exact_shapley(table, n), exact_banzhaf(table, n)
    if np.ptp(exact) == 0:
        return []  # a game nothing in the context moves: no ranking to recover
    per_coalition = record["table_seconds"] / 2**n
    keys = [k for k in table if "1" in k and "0" in k]  # every coalition but full and empty
    masks = np.array([[c == "1" for c in k] for k in keys], dtype=bool)
    truth = [table[k] for k in keys]
    fast_table = (table_of(fast, game), fast["table_seconds"] / 2**n) if fast else None
    priority = tie_order(n, question_seed(record["id"]))
    out = []
    every = methods(table, n, budgets, per_coalition, fast_table, (game, tokens), banzhaf)
    every["exact-shapley"] = (lambda rng: (exact, 2**n), per_coalition, 0.0)
    for name, (run, per, upfront) in every.items():
        rng = np.random.default_rng([question_seed(record["id"]), 11])
        for rep in range(1 if name in DETERMINISTIC or name.startswith("exact") else repeats):
            scores, used = run(rng)
            seconds = upfront + used * per
            if costs is not None:
                if (measured := costs.cost(record["model"], name, used)) is None:
                    break
                seconds = measured
            out.append(
                {"model": record["model"], "game": game, "id": record["id"], "method": name,
                 "rep": rep, "coalitions": used, "seconds": seconds,
                 **agreement(scores, exact, banzhaf), "lds": lds(scores.tolist(), masks, truth),
                 **{f"drop@{k}": removal_drop(scores.tolist(), priority, table, k)
                    for k in (1, 2, 3) if game == "logprob"}}
            )  # fmt: skip
    return out


def summarise(rows: list[dict]) -> list[dict]:
    """Per model, game and method: the question means (over repeats) with intervals."""
    groups: dict[tuple[str, str, str], dict[str, list[dict]]] = defaultdict(dict)
    for row in rows:
        groups[row["model"], row["game"], row["method"]].setdefault(row["id"], []).append(row)
    out = []
    for (model, game, method), by_question in groups.items():
        line: dict[str, Any] = {"model": model, "game": game, "method": method}
        fields = ("coalitions", "seconds", "spearman", "top1", "top3", "regret", "lds", "banzhaf")
        fields += DROPS
        for field in fields:
            means = [
                float(np.mean(vals))
                for reps in by_question.values()
                if (vals := [r[field] for r in reps if r.get(field) is not None])
            ]
            line[field] = bootstrap_mean(means)
        out.append(line)
    return out


DROPS = ("drop@1", "drop@2", "drop@3")  # log p(y) lost when the top k documents leave
PAIRED = ("lds", "spearman", "banzhaf", *DROPS)
"""What ``--against`` compares per question (drops: log p game only, ties by the shared
random order of ``faithfulness.tie_order``)."""


def paired_table(rows: list[dict], against: str) -> list[str]:
    """Every method minus ``against`` on the same questions (each question's mean over
    seeds first), bootstrap 95% over questions, per model and game."""
    means: dict[tuple[str, str, str], dict[str, dict[str, float]]] = defaultdict(dict)
    for (model, game, method, qid), reps in _by_question(rows).items():
        means[model, game, method][qid] = {
            f: float(np.mean(vals)) for f in PAIRED
            if (vals := [r[f] for r in reps if r.get(f) is not None])
        }  # fmt: skip
    heads = " | ".join(f"{f} minus {against}" for f in PAIRED)
    lines = [
        f"| model | game | method | {heads} | N |",
        "|---|---|---|" + "---|" * (len(PAIRED) + 1),
    ]
    for (model, game, method), per in sorted(means.items()):
        base = means.get((model, game, against))
        if base is None or method == against:
            continue
        ids = sorted(set(per) & set(base))
        cells = [
            cell(paired_difference([per[i].get(f) for i in ids], [base[i].get(f) for i in ids]))
            for f in PAIRED
        ]
        lines.append(f"| {model} | {game} | {method} | {' | '.join(cells)} | {len(ids)} |")
    return lines


def _by_question(rows: list[dict]) -> dict[tuple[str, str, str, str], list[dict]]:
    out: dict[tuple[str, str, str, str], list[dict]] = defaultdict(list)
    for row in rows:
        out[row["model"], row["game"], row["method"], row["id"]].append(row)
    return out


def cell(interval: Any, digits: int = 2) -> str:
    if interval.mean is None:
        return "-"
    if interval.low is None:
        return f"{interval.mean:.{digits}f}"
    return f"{interval.mean:.{digits}f} [{interval.low:.{digits}f}, {interval.high:.{digits}f}]"


def print_table(summary: list[dict], unit: str = "s (engine)") -> None:
    print(
        f"| model | game | method | coalitions | {unit} | Spearman | top-1 | top-3 "
        "| top-1 regret | LDS | Spearman (Banzhaf) | N |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    ordered = sorted(summary, key=lambda s: (s["model"], s["game"], s["coalitions"].mean))
    for s in ordered:
        print(
            f"| {s['model']} | {s['game']} | {s['method']} | {s['coalitions'].mean:.1f} | "
            f"{s['seconds'].mean:.1f} | {cell(s['spearman'])} | {cell(s['top1'])} | "
            f"{cell(s['top3'])} | {cell(s['regret'], 3)} | {cell(s['lds'])} | "
            f"{cell(s['banzhaf'])} | {s['spearman'].n} |"
        )


CURVES = {"ours-auto": "ours: auto", "ours-owen": "ours: owen", "ours-kernel": "ours: kernel",
          "contextcite": "ContextCite", "loo": "leave-one-out", "ours-banzhaf": "ours: banzhaf",
          "fast-auto": "ours: auto, fast mode", "fast-exact": "fast mode, every coalition",
          "cv-fast+auto": "fast table + auto's exact correction"}  # fmt: skip


def key(record: dict[str, Any]) -> tuple[str, str]:
    return record["model"], record["id"]


def family(method: str) -> str:
    """A curve's name: ``ours-owen@32`` -> ``ours-owen``, ``contextcite-16`` -> ``contextcite``;
    the package's fixed design is a point of its own, not on ContextCite's curve."""
    if method.startswith("contextcite-package"):
        return "contextcite-package"
    return "contextcite" if method.startswith("contextcite") else method.split("@")[0]


def plot(
    summary: list[dict], path: Path, xlabel: str = "engine seconds per question (recorded)"
) -> None:
    """Spearman with the exact values against engine seconds, one panel per model and game,
    one line per method family (interval bars: bootstrap 95% over questions)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    panels = sorted({(s["model"], s["game"]) for s in summary})
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), squeeze=False)
    for ax, (model, game) in zip(axes[0], panels, strict=True):
        for prefix, label in CURVES.items():
            points = sorted(
                (s["seconds"].mean, s["spearman"])
                for s in summary
                if (s["model"], s["game"], family(s["method"])) == (model, game, prefix)
                and s["spearman"].mean is not None
            )  # fmt: skip
            if not points:
                continue
            x = [c for c, _ in points]
            y = [i.mean for _, i in points]
            err = [[i.mean - (i.low or i.mean) for _, i in points],
                   [(i.high or i.mean) - i.mean for _, i in points]]  # fmt: skip
            ax.errorbar(x, y, yerr=err, marker="o", ms=3, capsize=2, label=label)
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel(xlabel)
        ax.set_title(f"{model}, {game} game", fontsize=9)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("Spearman with exact Shapley")
    axes[0][-1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def answer_tokens(records: list[dict[str, Any]]) -> dict[Any, int]:
    """y's token count per table, as the engine scores it (its encoding and the token that
    ended it; the tables do not keep the ids), from each model's own tokenizer."""
    from worker.engine.loading.registry import load_engine

    tokenizers = {m: load_engine(m).tokenizer for m in {r["model"] for r in records}}
    return {
        key(r): len(tokenizers[r["model"]].encode(r["answer"], add_special_tokens=False)) + 1
        for r in records
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--records",
        type=Path,
        nargs="+",
        default=[Path("docs/results/exact-vs-loo/rows.jsonl")],
        help="rows.jsonl files of bench/exact_vs_loo.py",
    )
    parser.add_argument("--budgets", default="8,12,16,24,32,48")
    parser.add_argument("--repeats", type=int, default=10, help="seeds per question")
    parser.add_argument("--out", type=Path, help="also write every row (JSONL) here")
    parser.add_argument(
        "--fast", type=Path, nargs="*", default=[], help="fast_rows.jsonl of the same tables"
    )
    parser.add_argument("--plot", type=Path, help="also draw Spearman against cost (PNG)")
    parser.add_argument(
        "--against", help="also print every method minus this one, paired by question"
    )
    parser.add_argument(
        "--seconds",
        type=Path,
        nargs="*",
        default=[],
        help="rows.jsonl of bench/method_seconds.py: price the log p game's measured methods "
        "in leave-one-out's seconds instead of coalitions x seconds per coalition",
    )
    args = parser.parse_args()
    costs = CostModel.load(args.seconds) if args.seconds else None
    games = ("logprob",) if costs else ("logprob", "answer")
    records = [
        json.loads(line)
        for path in args.records
        for line in path.read_text().splitlines()
        if line and "skipped" not in line
    ]
    budgets = [int(b) for b in args.budgets.split(",")]
    fast = {
        key(row): row
        for path in args.fast
        for row in map(json.loads, path.read_text().splitlines())
    }
    tokens = answer_tokens(records)
    rows = [
        row
        for record, game in itertools.product(records, games)
        for row in rows_for(
            record, game, budgets, args.repeats, fast.get(key(record)), costs, tokens[key(record)]
        )
    ]
    if args.out:
        args.out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    print(f"# {len(records)} recorded tables, {args.repeats} seeds per sampled method")
    summary = summarise(rows)
    unit = "x loo seconds (measured)" if costs else "s (engine)"
    if costs:
        print(f"# measured budgets per model and family: {costs.measured}")
    print_table(summary, unit)
    if args.against:
        print(f"\nPaired on the same questions against {args.against}:\n")
        print("\n".join(paired_table(rows, args.against)))
    if args.plot:
        plot(summary, args.plot, unit if costs else "engine seconds per question (recorded)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
