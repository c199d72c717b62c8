"""Fast mode's answers with the kept keys moved to the coalition's own positions, and with
a few kept tokens recomputed: a feasibility check in plain Hugging Face code, one
coalition at a time, before the engine does any of it.

Fast mode reuses the full-context cache: a kept token keeps the key it had at its
full-context position, so every removed document leaves a gap of positions (and, on
Gemma 3's sliding-window layers, pushes kept text out of the question's window). RoPE keys
can be moved: rotating a cached key by -d puts it d positions earlier. What is left is the
removed text's trace in the kept tokens' states. For the questions of an
``exact_vs_loo.py`` output and the same random coalitions as ``bench/fast_recompute.py``,
this decodes each coalition greedily (QA-normalised answers against the exact engine's
recorded ones) with every kept token at its closed-up position and

- ``moved``: every kept token's cached keys and values (keys rotated);
- ``heads16`` / ``heads64``: the first 16 / 64 kept tokens after each removed stretch
  recomputed with the question tail (each sees what precedes it), the rest moved;
- ``blend15``: CacheBlend's choice (Yao et al., 2025): the 15% of the kept tokens after the
  first removed one whose layer-1 keys deviate most from the exact prompt's, recomputed
  (here the exact keys come from the exact pass: the selection's upper bound, not its cost);
- ``recomputed``: the closed-up prompt computed from scratch (exact but for the documents'
  numbering, which the full context fixes).

    .venv/bin/python bench/fast_positions.py --model gemma-3-270m --questions 8 --coalitions 32
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import DynamicCache

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.fast_recompute import coalitions, recorded_questions  # noqa: E402
from bench.rows import append_rows  # noqa: E402
from worker.engine.attention.rope_shift import move_keys  # noqa: E402
from worker.engine.loading.registry import load_engine  # noqa: E402
from worker.evaluation.faithfulness import mask_key, question_seed  # noqa: E402
from worker.evaluation.paired import bootstrap_mean  # noqa: E402
from worker.shapley import segment  # noqa: E402
from worker.shapley.game import normalize_answer  # noqa: E402

MAX_NEW = 16
VARIANTS = ("moved", "heads16", "heads64", "blend15", "recomputed")
KV = list[tuple[torch.Tensor, torch.Tensor]]


def prompt_kv(model: Any, ids: list[int]) -> tuple[DynamicCache, KV]:
    cache = DynamicCache()
    model(torch.tensor([ids]), cache=cache, use_cache=True)
    return cache, [(layer.keys, layer.values) for layer in cache.layers]


def moved_cache(model: Any, full_kv: KV, slots: torch.Tensor, at: torch.Tensor) -> DynamicCache:
    """The full context's keys and values of ``slots``, keys moved to positions ``at`` by
    the engine's own ``move_keys``."""
    layers = [(keys[:, :, slots], values[:, :, slots]) for keys, values in full_kv]
    move_keys(model.model, model.config.get_text_config(), layers, (slots - at)[None])
    cache = DynamicCache()
    for layer, (keys, values) in enumerate(layers):
        cache.update(keys, values, layer)
    return cache


def decode(
    model: Any, cache: DynamicCache, seen: list[int], ids: list[int], at: list[int], engine: Any
) -> str:
    """Greedy answer after feeding ``ids`` at positions ``at``, ``cache`` holding keys at
    positions ``seen`` (cache order): every query sees the keys at or before its position
    (within the window on sliding layers); until EOS or a newline after text."""
    config = model.config.get_text_config()
    window = getattr(config, "sliding_window", None)
    types = set(getattr(config, "layer_types", None) or ["full_attention"])
    keys, out = list(seen), []
    for _ in range(MAX_NEW):
        keys += at
        masks = {kind: _mask(keys, at, window if kind == "sliding_attention" else None)
                 for kind in types}  # fmt: skip
        mask: Any = masks if len(types) > 1 else next(iter(masks.values()))
        logits = model(
            torch.tensor([ids]), cache=cache, position_ids=torch.tensor([at]),
            attention_mask=mask, use_cache=True,
        ).logits  # fmt: skip
        token = int(logits[0, -1].argmax())
        if token in engine.eos:
            break
        out.append(token)
        if "\n" in engine.tokenizer.decode(out, skip_special_tokens=True).lstrip():
            break
        ids, at = [token], [at[-1] + 1]
    text = engine.tokenizer.decode(out, skip_special_tokens=True)
    return text.lstrip().partition("\n")[0].strip()


def _mask(keys: list[int], queries: list[int], window: int | None) -> torch.Tensor:
    k, q = torch.tensor(keys)[None, :], torch.tensor(queries)[:, None]
    visible = k <= q
    if window is not None:
        visible &= q - k < window
    return torch.where(visible, 0.0, torch.finfo(torch.float32).min)[None, None]


def blended(model, full, full_kv: KV, kept: np.ndarray, redo: np.ndarray, tail, engine) -> str:
    """Kept slots at their closed-up positions: the ``redo`` ones (a flag per kept slot)
    recomputed with the tail, the rest moved."""
    slots = np.flatnonzero(kept)
    at = np.arange(len(slots))
    reuse = ~redo
    cache = moved_cache(model, full_kv, torch.from_numpy(slots[reuse]), torch.from_numpy(at[reuse]))
    ids = [full[s] for s in slots[redo]] + list(tail)
    positions = at[redo].tolist() + list(range(len(slots), len(slots) + len(tail)))
    return decode(model, cache, at[reuse].tolist(), ids, positions, engine)


def gap_heads(kept: np.ndarray, count: int) -> np.ndarray:
    """Per kept slot: whether it is among the first ``count`` kept slots after a removed one."""
    flags: list[bool] = []
    since: int | None = None
    for keep in kept:
        if not keep:
            since = 0
            continue
        flags.append(since is not None and since < count)
        since = None if since is None else since + 1
    return np.array(flags, dtype=bool)


def deviating(exact_kv: KV, moved: DynamicCache, kept: np.ndarray, share: float) -> np.ndarray:
    """The kept slots after the first removed one whose layer-1 keys deviate most from the
    exact prompt's: the top ``share`` of them."""
    deviation = (exact_kv[1][0][0] - moved.layers[1].keys[0]).norm(dim=(0, 2)).numpy()
    slots, removed = np.flatnonzero(kept), np.flatnonzero(~kept)
    after = slots > removed[0] if len(removed) else np.zeros(len(slots), dtype=bool)
    deviation[~after] = -1.0
    flags = np.zeros(len(slots), dtype=bool)
    flags[np.argsort(-deviation)[: int(np.ceil(share * after.sum()))]] = True
    return flags


def one_coalition(model, engine, full, full_kv: KV, kept: np.ndarray, tail) -> dict[str, Any]:
    slots = np.flatnonzero(kept)
    at = torch.arange(len(slots))
    exact_cache, exact_kv = prompt_kv(model, [full[s] for s in slots])
    choices = {
        "moved": np.zeros(len(slots), dtype=bool),
        "heads16": gap_heads(kept, 16),
        "heads64": gap_heads(kept, 64),
        "blend15": deviating(exact_kv, moved_cache(model, full_kv, torch.from_numpy(slots), at),
                             kept, 0.15),
    }  # fmt: skip
    texts = {name: blended(model, full, full_kv, kept, redo, tail, engine)
             for name, redo in choices.items()}  # fmt: skip
    after = list(range(len(slots), len(slots) + len(tail)))
    texts["recomputed"] = decode(model, exact_cache, at.tolist(), list(tail), after, engine)
    shares = {name: float(redo.mean()) for name, redo in choices.items()}
    return {"texts": texts, "shares": shares | {"recomputed": 1.0}}


def one_question(engine: Any, example: Any, row: dict[str, Any], count: int) -> dict[str, Any]:
    documents = list(example.documents[: row["n"]])
    units = segment.document_units(documents)
    session = engine.open_session(example.question, documents)
    full, tail = session.full, list(session.layout.tail)
    masks = coalitions(row["n"], count, question_seed(row["id"]))
    agree: dict[str, list[bool]] = {v: [] for v in VARIANTS}
    shares: dict[str, list[float]] = {v: [] for v in VARIANTS}
    with torch.inference_mode():
        _, full_kv = prompt_kv(engine.model, list(full[: len(full) - len(tail)]))
        for mask in masks:
            truth = normalize_answer(row["answers"][mask_key(mask)])
            kept = session.layout.kept_slots(units, mask)
            got = one_coalition(engine.model, engine, full, full_kv, kept, tail)
            for v in VARIANTS:
                agree[v].append(normalize_answer(got["texts"][v]) == truth)
                shares[v].append(got["shares"][v])
    return {"model": row["model"], "id": row["id"],
            **{v: float(np.mean(agree[v])) for v in VARIANTS},
            "recomputed_share": {v: float(np.mean(shares[v])) for v in VARIANTS}}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=Path, default=Path("docs/results/exact-vs-loo-8docs"))
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--questions", type=int, default=8)
    parser.add_argument("--coalitions", type=int, default=32)
    parser.add_argument("--out", type=Path, help="append per-question rows (JSON lines) here")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    rows, examples = recorded_questions(args.records, args.model, args.questions)
    engine = load_engine(args.model)
    results = []
    for row in rows:
        results.append(one_question(engine, examples[row["id"]], row, args.coalitions))
        print(json.dumps(results[-1]), file=sys.stderr)
        append_rows(args.out, results[-1:])
    print("| model | variant | kept tokens recomputed | agreement with exact | N |")
    print("|---|---|---|---|---|")
    for key in VARIANTS:
        ci = bootstrap_mean([r[key] for r in results])
        share = np.mean([r["recomputed_share"][key] for r in results])
        interval = f" [{ci.low:.2f}, {ci.high:.2f}]" if ci.low is not None else ""
        print(f"| {args.model} | {key} | {share:.2f} | {ci.mean:.2f}{interval} | {len(results)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
