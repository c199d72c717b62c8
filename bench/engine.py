"""Engine benchmark: the naive ``generate`` loop against the engine with each optimisation
switched on in turn, on NaturalQuestions questions, for the same random coalitions.

    .venv/bin/python bench/engine.py [--models smollm2-135m,gemma-3-270m,tiny-t5-fid,tiny-t5]
        [--coalitions 12,128] [--docs 10] [--max-new-tokens 8] [--questions 1] [--threads 1]
        [--modes WORDS] [--no-newline-stop] [--device cpu|cuda] [--json PATH]

Prints one table row per (model, number of coalitions, mode): seconds, the speed-up over
the naive loop, seconds per coalition after the full context (the marginal cost: the full
context is the job's answer stage, computed once whatever the mode) and that speed-up,
forward passes and tokens computed per coalition, the speculative acceptance rate (draft
answers), the share of look-up draft tokens accepted, and the share of coalitions whose
answer equals the naive loop's. ``x exact`` compares fast mode's marginal seconds with
the exact engine's (all options on) in the same run. Answers end at the first newline
after their text (``EngineOptions.stop_at_newline``; the naive loop uses a
``StoppingCriteria`` with the same rule); ``--no-newline-stop`` turns that off everywhere.
Figures go to docs/performance.md. ``--json PATH`` also writes the rows, each with the
attention backend it ran on, for ``bench/gpu_check.py`` (``make gpu-check``) to read
instead of parsing this table; ``--device cuda`` runs everything on the GPU.
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import itertools
import json
import math
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from transformers import StoppingCriteria, StoppingCriteriaList

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from worker.engine.base import EngineOptions  # noqa: E402
from worker.engine.loading.registry import load_engine  # noqa: E402
from worker.engine.prompts import fid_passage  # noqa: E402
from worker.engine.stopping import ends_answer  # noqa: E402
from worker.evaluation.paths import nq_file  # noqa: E402
from worker.shapley import segment  # noqa: E402
from worker.shapley.units import Document  # noqa: E402

OFF = EngineOptions(
    prefix_cache=False, prefix_tree=False, speculative=False, lookup_tokens=0, screened_head="off"
)
MODES: dict[str, EngineOptions] = {
    "engine: batched": OFF,
    "+ prefix cache": replace(OFF, prefix_cache=True),
    "+ prefix tree": replace(OFF, prefix_cache=True, prefix_tree=True),
    "+ speculative": replace(OFF, prefix_cache=True, prefix_tree=True, speculative=True),
    "+ look-up drafts": EngineOptions(layout="tree", key_blocks=False, screened_head="off"),
}
EXACT = "+ screened head"  # every exact option on (causal); T5's is the last of MODES
CAUSAL_ONLY = {
    "+ key blocks": EngineOptions(layout="tree", screened_head="off"),
    EXACT: EngineOptions(layout="tree"),
    "linear layout (FA2's)": EngineOptions(layout="linear"),
    "fast mode, fp32 (approx.)": EngineOptions(fast=True, fast_bf16="off"),
    "fast mode (approx.)": EngineOptions(fast=True),  # bf16 where that measured faster
}


@dataclass
class Row:
    model: str
    mode: str
    seconds: float
    passes: int
    tokens: int
    coalitions: int
    acceptance: float | None
    agreement: float
    lookup: float | None = None
    marginal: float = 0.0  # seconds after the full context, per later coalition
    backend: str = ""  # the attention kernel the coalitions ran on


def questions(count: int, docs: int) -> list[tuple[str, list[Document]]]:
    out = []
    with gzip.open(nq_file(20 if docs > 10 else 10), "rt") as lines:
        for line, _ in zip(lines, range(count), strict=False):
            record = json.loads(line)
            out.append(
                (
                    record["question"],
                    [Document(d["text"], d["title"]) for d in record["documents"][:docs]],
                )
            )
        return out


class NewlineStop(StoppingCriteria):
    """The engine's newline stop for plain ``generate``: the text after ``start`` holds a
    newline after non-whitespace."""

    def __init__(self, tokenizer, start: int) -> None:
        self.tokenizer, self.start = tokenizer, start

    def __call__(self, input_ids, scores, **kwargs) -> torch.BoolTensor:
        texts = self.tokenizer.batch_decode(input_ids[:, self.start :], skip_special_tokens=True)
        return torch.tensor([ends_answer(t) for t in texts], device=input_ids.device)


def naive(
    engine, question, docs, masks, max_new, stop: bool
) -> tuple[list[list[int]], int, int, float]:
    """One plain ``generate`` per coalition (FiD: re-encoding the kept passages each time)."""
    units = segment.document_units(docs)
    session = engine.open_session(question, docs, max_new_tokens=max_new)
    answers, passes, tokens = [], 0, 0
    start = after_full = time.perf_counter()
    for row in masks:
        kwargs, prompt_tokens = _naive_inputs(engine, session, question, docs, units, row)
        offset = kwargs["input_ids"].shape[1] if engine.family == "causal" else 1
        criteria = [NewlineStop(engine.codec.tokenizer, offset)] if stop else []
        out = engine.model.generate(
            **kwargs,
            do_sample=False,
            max_new_tokens=max_new,
            pad_token_id=engine.pad,
            eos_token_id=_eos(engine),
            stopping_criteria=StoppingCriteriaList(criteria),
        )
        new = (
            out[0, kwargs["input_ids"].shape[1] :].tolist()
            if engine.family == "causal"
            else out[0, 1:].tolist()
        )
        answers.append(_until_eos(new, _eos(engine)))
        passes += len(answers[-1])
        tokens += prompt_tokens + len(answers[-1]) - 1
        if len(answers) == 1:
            after_full = time.perf_counter()
    end = time.perf_counter()
    return answers, passes, tokens, end - start, (end - after_full) / max(1, len(masks) - 1)


def _naive_inputs(engine, session, question, docs, units, row):
    """``generate``'s arguments for one coalition, on the model's device."""
    device = engine.torch_device
    if engine.family == "causal":
        ids = torch.tensor([session.prompt_ids(units, row)], device=device)
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}, ids.shape[1]
    if not engine.fid:
        ids = torch.tensor([session.prompt_ids(units, row)], device=device)
        return {"input_ids": ids, "attention_mask": (ids != engine.pad).long()}, ids.shape[1]
    kept = [d for d, keep in zip(docs, row, strict=True) if keep] or [Document("")]
    passages = [(*engine.codec.encode(fid_passage(question, d)[0]).ids, engine.eos) for d in kept]
    width = max(len(p) for p in passages)
    ids = torch.tensor([list(p) + [engine.pad] * (width - len(p)) for p in passages], device=device)
    states = engine.model.get_encoder()(
        input_ids=ids, attention_mask=(ids != engine.pad).long()
    ).last_hidden_state
    mask = (ids != engine.pad).reshape(1, -1).long()
    from transformers.modeling_outputs import BaseModelOutput

    return {
        "encoder_outputs": BaseModelOutput(
            last_hidden_state=states.reshape(1, -1, states.shape[-1])
        ),
        "attention_mask": mask,
        "input_ids": torch.zeros(1, 1, dtype=torch.long, device=device),
    }, int(ids.numel())


def naive_backend(engine) -> str:
    """What plain ``generate`` attends with: calls without the engine's masks go to
    transformers' own SDPA (``worker.engine.attention.sdpa``); eager models stay eager."""
    return str(getattr(engine, "sdpa_backend", engine.attention_backend))


def _eos(engine) -> list[int]:
    return sorted(engine.eos) if isinstance(engine.eos, set) else [engine.eos]


def _until_eos(tokens: list[int], eos: list[int]) -> list[int]:
    for i, t in enumerate(tokens):
        if t in eos:
            return tokens[: i + 1]
    return tokens


def engine_mode(
    engine, options, question, docs, masks, max_new, chunk
) -> tuple[list, object, float, float]:
    """The pipeline's call pattern: the full context first, then batches of ``chunk``.
    Returns the answers, the session, the seconds in all and per coalition after the first."""
    engine = engine.tuned(options)  # the loaded engine's own options stay as they are
    units = segment.document_units(docs)
    start = time.perf_counter()
    session = engine.open_session(question, docs, max_new_tokens=max_new)
    got = session.answer_tokens(units, masks[:1])
    after_full = time.perf_counter()
    for i in range(1, len(masks), chunk):
        got += session.answer_tokens(units, masks[i : i + chunk])
    end = time.perf_counter()
    return got, session, end - start, (end - after_full) / max(1, len(masks) - 1)


def _fitting(engine, question: str, docs: list[Document]) -> list[Document]:
    """The leading documents whose prompt fits the model's context (the tiny byte-level T5
    holds 4096 tokens: about five NQ passages), said on stdout when some are dropped."""
    kept = list(docs)
    while len(kept) > 1 and engine.count_tokens(question, kept) + 64 > engine.max_context_tokens:
        kept.pop()
    if len(kept) < len(docs):
        print(f"# {engine.name}: {len(docs)} documents exceed its context; using {len(kept)}")
    return kept


def bench_model(name, args) -> list[Row]:
    engine = load_engine(name, device=args.device)
    rows = []
    sizes = [int(n) for n in str(args.coalitions).split(",")]
    for (qi, (question, docs)), count in itertools.product(
        enumerate(questions(args.questions, args.docs)), sizes
    ):
        docs = _fitting(engine, question, docs)
        rng = np.random.default_rng(qi)
        masks = rng.random((count, len(docs))) < 0.5
        masks[0] = True
        stop = not args.no_newline_stop
        ref, passes, tokens, seconds, marginal = naive(
            engine, question, docs, masks, args.max_new_tokens, stop
        )
        rows.append(
            Row(name, "naive generate loop", seconds, passes, tokens, len(masks), None, 1.0,
                marginal=marginal, backend=naive_backend(engine))
        )  # fmt: skip
        modes = {**MODES, **(CAUSAL_ONLY if engine.family == "causal" else {})}
        wanted = [w for w in args.modes.split(",") if w]
        modes = {m: o for m, o in modes.items() if not wanted or any(w in m for w in wanted)}
        for mode, options in modes.items():
            options = replace(options, stop_at_newline=stop)
            got, session, secs, marginal = engine_mode(
                engine, options, question, docs, masks, args.max_new_tokens, args.chunk
            )
            stats, proposed = session.stats, getattr(session, "lookup_proposed", 0)
            lookup = session.lookup_accepted / proposed if proposed else None
            agree = float(np.mean([list(g) == r for g, r in zip(got, ref, strict=True)]))
            rows.append(
                Row(
                    name,
                    mode,
                    secs,
                    stats.forward_passes,
                    stats.tokens_computed,
                    len(masks),
                    stats.acceptance_rate,
                    agree,
                    lookup,
                    marginal,
                    stats.attention_backend,
                )
            )
        first = qi == 0 and count == sizes[0] and name == args.models.split(",")[0]
        print_table(rows[-len(modes) - 1 :], header=first)
    return rows


def shapley_gap(name: str, args: argparse.Namespace) -> None:
    """Exact vs fast mode on every coalition of the documents: agreement, and the exact
    document-level Shapley values of the game 1[answer(S) = full-context answer] under each."""
    engine = load_engine(name, device=args.device)
    question, docs = questions(1, args.docs)[0]
    n = len(docs)
    masks = np.array([[(s >> i) & 1 for i in range(n)] for s in range(2**n)], dtype=bool)
    masks = np.concatenate([masks[-1:], masks[:-1]])  # the full context first
    values = {}
    exact, fast = CAUSAL_ONLY[EXACT], CAUSAL_ONLY["fast mode (approx.)"]
    for mode, options in (("exact", exact), ("fast", fast)):
        got, _, secs, _ = engine_mode(
            engine, options, question, docs, masks, args.max_new_tokens, 8
        )
        values[mode] = (np.array([g == got[0] for g in got], dtype=float), got, secs)
    agree = np.mean([a == b for a, b in zip(values["exact"][1], values["fast"][1], strict=True)])
    phi = {mode: _shapley(masks, v[0]) for mode, v in values.items()}
    print(f"# {name}: {len(masks)} coalitions, answer agreement fast vs exact {agree:.2f}, "
          f"seconds exact {values['exact'][2]:.1f} fast {values['fast'][2]:.1f}")  # fmt: skip
    for mode, scores in phi.items():
        print(f"#   phi {mode:>5}: " + " ".join(f"{x:+.3f}" for x in scores))
    print(f"#   max |phi exact - phi fast| = {np.max(np.abs(phi['exact'] - phi['fast'])):.3f}")


def _shapley(masks: np.ndarray, value: np.ndarray) -> np.ndarray:
    """Exact Shapley values from the value of every coalition."""
    n = masks.shape[1]
    lookup = {m.tobytes(): v for m, v in zip(masks, value, strict=True)}
    out = np.zeros(n)
    for m in masks:
        size = int(m.sum())
        for i in np.flatnonzero(m):
            without = m.copy()
            without[i] = False
            weight = math.factorial(size - 1) * math.factorial(n - size) / math.factorial(n)
            out[i] += weight * (lookup[m.tobytes()] - lookup[without.tobytes()])
    return out


COLUMNS = [("model", 12), ("N", 3), ("mode", 25), ("s", 7), ("x naive", 7),
           ("s/coal after", 12), ("x naive", 7), ("x exact", 7), ("passes/coal", 11),
           ("tokens/coal", 11), ("accept", 6), ("look-up", 7), ("agree", 5)]  # fmt: skip


def print_table(rows: list[Row], header: bool) -> None:
    """Markdown rows; ``x naive`` and ``agree`` compare with the first row (the naive loop),
    ``x exact`` (fast mode only) with the exact engine's row."""
    if header:
        print("| " + " | ".join(f"{name:>{width}}" for name, width in COLUMNS) + " |")
        print("|" + "|".join("-" * (width + 2) for _, width in COLUMNS) + "|")
    base = rows[0]
    exact = next((r for r in rows if r.mode == EXACT), None)
    for r in rows:
        versus = "-"
        if "fast" in r.mode and exact is not None:
            versus = f"{exact.marginal / r.marginal:.2f}"
        cells = [
            r.model, str(r.coalitions), r.mode, f"{r.seconds:.2f}",
            f"{base.seconds / r.seconds:.2f}", f"{r.marginal:.3f}",
            f"{base.marginal / r.marginal:.2f}", versus,
            f"{r.passes / r.coalitions:.2f}", f"{r.tokens / r.coalitions:.0f}",
            "-" if r.acceptance is None else f"{r.acceptance:.2f}",
            "-" if r.lookup is None else f"{r.lookup:.2f}", f"{r.agreement:.2f}",
        ]  # fmt: skip
        line = " | ".join(f"{c:>{w}}" for c, (_, w) in zip(cells, COLUMNS, strict=True))
        print(f"| {line} |", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="smollm2-135m,gemma-3-270m,tiny-t5-fid,tiny-t5")
    parser.add_argument(
        "--coalitions", default="12,128", help="numbers of random coalitions, comma-separated"
    )
    parser.add_argument("--docs", type=int, default=10)
    parser.add_argument("--max-new-tokens", type=int, default=8)
    parser.add_argument("--questions", type=int, default=1)
    parser.add_argument("--chunk", type=int, default=32, help="coalitions per answers() call")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--modes", default="", help="only modes containing these words")
    parser.add_argument("--shapley", action="store_true", help="fast vs exact Shapley values")
    parser.add_argument(
        "--no-newline-stop", action="store_true", help="let answers run past their line"
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--json", type=Path, help="also write the table's rows here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"# {args.coalitions} coalitions x {args.questions} NQ question(s), {args.docs} "
        f"documents, max {args.max_new_tokens} new tokens, {args.threads} thread(s), "
        f"{args.device}"
    )
    rows: list[Row] = []
    for name in args.models.split(","):
        if args.shapley:
            shapley_gap(name, args)
        else:
            rows += bench_model(name, args)
    if args.json:
        write_json(args.json, rows, args)
    return 0


def write_json(path: Path, rows: list[Row], args: argparse.Namespace) -> None:
    """The rows as measured (seconds, passes and tokens in all, over ``coalitions``), with
    the run's settings, so a reader derives its own columns from one source."""
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    record = {"settings": settings, "rows": [dataclasses.asdict(r) for r in rows]}
    path.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    sys.exit(main())
