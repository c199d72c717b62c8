"""Decoder-only engine (Llama, Gemma, SmolLM): exact greedy answers with shared work.

Per batch of coalitions: rows reuse the full-context KV cache up to where their prompt
first differs from it, compute only the rest of their prompt plus the job's draft tree in
one forward pass (tree attention), and decode further only where greedy decoding leaves the
tree. The vocabulary projection runs only where a next token is needed.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from transformers import DynamicCache

from worker.engine.attend import MaskSpec, Slots, build_mask
from worker.engine.base import Engine, EngineOptions, EngineSession, check_masks, chunks
from worker.engine.draft import DraftTree, Walk, greedy_walk
from worker.engine.errors import ContextTooLong
from worker.engine.layout import PromptLayout
from worker.engine.loading import LoadedModel
from worker.engine.memory import split_on_oom, token_budget
from worker.engine.prompts import Codec
from worker.engine.stopping import StopRule, newline_ids
from worker.shapley import segment
from worker.shapley.oracle import Masks, OracleStats
from worker.shapley.units import Document, Masking, Unit


class CausalEngine(Engine):
    """A resident decoder-only model."""

    family = "causal"

    def __init__(self, loaded: LoadedModel, name: str, options: EngineOptions | None = None):
        self.name, self.model, self.tokenizer = name, loaded.model, loaded.tokenizer
        self.device, self.torch_device = str(loaded.device), loaded.device
        self.attention_backend = _usable_backend(loaded)
        self.options = options or EngineOptions()
        self.codec = Codec(loaded.tokenizer)
        config = self.model.config.get_text_config()
        self.max_context_tokens = int(getattr(config, "max_position_embeddings", 2048))
        self.eos = _eos_ids(self.model, self.tokenizer)
        self.newline_ids = newline_ids(self.tokenizer)
        self.pad = _pad_id(self.tokenizer, self.eos)
        self.mask_spec = MaskSpec.for_model(self.model)
        self.base = getattr(self.model, self.model.base_model_prefix)
        self.softcap = getattr(config, "final_logit_softcapping", None)
        self.kv_bytes = _kv_bytes_per_token(config, self.model.dtype)
        self._warm_up()

    def open_session(
        self,
        question: str,
        documents: list[Document],
        *,
        masking: Masking = "remove",
        max_new_tokens: int = 16,
    ) -> CausalSession:
        layout = PromptLayout(self.codec, question, documents, masking, self.pad)
        return CausalSession(self, layout, max_new_tokens)

    def count_tokens(self, question: str, documents: list[Document]) -> int:
        return len(PromptLayout(self.codec, question, documents, "remove", self.pad).full())

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """The output head (with Gemma's soft-capping) on the given hidden states only."""
        logits = self.model.get_output_embeddings()(hidden).float()
        if self.softcap:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return logits

    def _warm_up(self) -> None:
        docs = [Document("Warm-up passage.", "Warm-up")]
        units = segment.document_units(docs)
        self.open_session("Warm up?", docs, max_new_tokens=2).answers(units, np.ones((1, 1), bool))


@dataclass(frozen=True)
class _Plan:
    """One coalition's work: reuse full-context slots (the first ``keep`` of them, or those
    flagged), then compute ``new`` from position ``start``."""

    key: Hashable
    keep: int | np.ndarray
    new: tuple[int, ...]
    start: int

    @property
    def reach(self) -> int:
        return self.keep if isinstance(self.keep, int) else len(self.keep)

    @property
    def length(self) -> int:
        return self.start + len(self.new)

    def extended(self, tokens: tuple[int, ...]) -> _Plan:
        return _Plan(self.key, self.keep, self.new + tokens, self.start)


@dataclass
class _Batch:
    """A batch mid-decoding: cache, slot table, and per row its prompt length and output."""

    cache: DynamicCache
    slots: Slots
    lengths: list[int]
    outputs: list[list[int]]
    rows: list[int]


class CausalSession(EngineSession):
    """One job on a :class:`CausalEngine` (see the module docstring for what is shared)."""

    def __init__(self, engine: CausalEngine, layout: PromptLayout, max_new_tokens: int):
        self.engine, self.layout, self.max_new_tokens = engine, layout, max_new_tokens
        self.full = layout.full()
        if len(self.full) + max_new_tokens > engine.max_context_tokens:
            raise ContextTooLong(len(self.full) + max_new_tokens, engine.max_context_tokens)
        self.stats = OracleStats(attention_backend=engine.attention_backend)
        self.tree = DraftTree(max_nodes=engine.options.draft_nodes)
        newline = engine.newline_ids if engine.options.stop_at_newline else frozenset()
        self.stop = StopRule(engine.tokenizer, frozenset(engine.eos), max_new_tokens, newline)
        self._memo: dict[Hashable, tuple[int, ...]] = {}
        self._answer_ids: dict[str, tuple[int, ...]] = {}
        self._full_kv: list[tuple[torch.Tensor, torch.Tensor]] | None = None

    # --- the Oracle protocol -------------------------------------------------------------

    def answers(self, units: Sequence[Unit], masks: Masks) -> list[str]:
        plans = self.plans(units, masks)
        todo = list({p.key: p for p in plans if p.key not in self._memo}.values())
        if todo:
            self._decode(todo)
        return [self._text(self._memo[p.key]) for p in plans]

    def log_probs(
        self, units: Sequence[Unit], masks: Masks, answer: str
    ) -> npt.NDArray[np.float64]:
        plans = self.plans(units, masks)
        target = self._answer_ids.get(answer) or self._tokenize_answer(answer)
        out = np.zeros(len(plans), dtype=np.float64)
        for batch in self._batches(plans, extra=len(target)):
            scores = split_on_oom(lambda b: self._score_batch(b, target), batch)
            out[[i for i, _ in batch]] = scores
        return out

    def answer_tokens(self, units: Sequence[Unit], masks: Masks) -> list[tuple[int, ...]]:
        """The generated token ids per coalition, with the EOS or newline token that ended it."""
        self.answers(units, masks)
        return [self._memo[p.key] for p in self.plans(units, masks)]

    def plans(self, units: Sequence[Unit], masks: Masks) -> list[_Plan]:
        """Exact mode: the coalition's own prompt after the longest prefix it shares with the
        full context. Fast mode: the full-context slots of what it keeps, then the tail."""
        rows = check_masks(units, masks)
        if self.engine.options.fast:
            tail = len(self.full) - len(self.layout.tail)
            plans = []
            for row in rows:
                keep = self.layout.kept_slots(units, row)
                plans.append(_Plan(("fast", keep.tobytes()), keep, self.layout.tail, tail))
            return plans
        out = []
        for row in rows:
            prompt = self.layout.ids(units, row)
            reuse = self._reuse(prompt)
            out.append(_Plan(prompt, reuse, prompt[reuse:], reuse))
        return out

    # --- greedy answers ------------------------------------------------------------------

    def prompt_ids(self, units: Sequence[Unit], mask: np.ndarray) -> tuple[int, ...]:
        """The coalition's prompt ids (what a plain ``generate`` reference must be given)."""
        return self.layout.ids(units, mask)

    def _decode(self, plans: list[_Plan]) -> None:
        for batch in self._batches(plans, extra=self._tree_size()):
            split_on_oom(self._decode_batch, batch)

    def _tree_size(self) -> int:
        return len(self.tree) if self.engine.options.speculative else 0

    def _decode_batch(self, batch: list[tuple[int, _Plan]]) -> list[None]:
        plans = [p for _, p in batch]
        tree = self.tree if self.engine.options.speculative and len(self.tree) else None
        state, hidden = self._prefill(plans, tree)
        n = len(tree) if tree is not None else 0
        argmax = self.engine.logits(hidden[:, hidden.shape[1] - n - 1 :]).argmax(-1).tolist()
        walks = [self._walk(tree, a) for a in argmax]
        if tree is not None:
            state.slots.valid[:, -n:] = _on_path(tree, walks, state.slots.valid.device)
        for row, walk in enumerate(walks):
            state.outputs[row] = walk.tokens
        self._continue(state)
        for plan, output in zip(plans, state.outputs, strict=True):
            self._remember(plan.key, output)
        return []

    def _walk(self, tree: DraftTree | None, argmax: list[int]) -> Walk:
        walk = greedy_walk(tree or DraftTree(0), argmax, self.stop.done)
        self.stats.draft_tokens_proposed += walk.proposed
        self.stats.draft_tokens_accepted += walk.accepted
        return walk

    def _continue(self, state: _Batch) -> None:
        """Plain cached greedy steps for the rows whose answer left the draft tree."""
        while True:
            active = [r for r, out in enumerate(state.outputs) if not self.stop.done(out)]
            if not active:
                return
            self._select(state, active)
            last = torch.tensor([[state.outputs[r][-1]] for r in state.rows])
            pos = torch.tensor([[state.lengths[r] + len(state.outputs[r]) - 1] for r in state.rows])
            hidden = self._forward(state, last, pos, torch.ones_like(pos, dtype=torch.bool))
            for r, token in zip(
                state.rows, self.engine.logits(hidden[:, -1]).argmax(-1).tolist(), strict=True
            ):
                state.outputs[r].append(int(token))

    def _select(self, state: _Batch, active: list[int]) -> None:
        keep = [state.rows.index(r) for r in active]
        if len(keep) != len(state.rows):
            index = torch.tensor(keep, device=state.slots.pos.device)
            state.cache.batch_select_indices(index)
            state.slots = state.slots.select(index)
        state.rows = active

    def _remember(self, key: Hashable, output: list[int]) -> None:
        answer = tuple(output)
        self._memo[key] = answer
        self._answer_ids.setdefault(self._text(answer), answer)
        if self.engine.options.speculative:
            self.tree.add(answer)

    def _text(self, answer: tuple[int, ...]) -> str:
        return self.stop.text(answer)

    # --- teacher forcing -----------------------------------------------------------------

    def _score_batch(self, batch: list[tuple[int, _Plan]], target: tuple[int, ...]) -> list[float]:
        _, hidden = self._prefill([p.extended(target) for _, p in batch], None)
        n, width = len(target), hidden.shape[1]
        logits = self.engine.logits(hidden[:, width - n - 1 : width - 1])
        chosen = torch.log_softmax(logits, -1)[:, torch.arange(n), torch.tensor(target)]
        return chosen.double().sum(-1).tolist()

    def _tokenize_answer(self, answer: str) -> tuple[int, ...]:
        eos = min(self.engine.eos) if self.engine.eos else None
        ids = self.engine.codec.encode(answer).ids
        return ids + ((eos,) if eos is not None else ())

    # --- shared forward machinery --------------------------------------------------------

    def _batches(self, plans: Sequence[_Plan], extra: int) -> list[list[tuple[int, _Plan]]]:
        """Batches of (index, plan), sorted by new length then reuse so that rows of a batch
        pad little; sized by the memory budget."""
        new = [len(p.new) + extra for p in plans]
        order = sorted(range(len(plans)), key=lambda i: (new[i], plans[i].reach))
        context = len(self.full) + self.max_new_tokens + extra
        budget = self.engine.options.batch_tokens or token_budget(self.engine, context)
        groups = chunks(order, new, budget, self.engine.options.max_batch)
        return [[(i, plans[i]) for i in group] for group in groups]

    def _reuse(self, prompt: tuple[int, ...]) -> int:
        """How many leading tokens the full-context cache covers (at least one is left)."""
        if not self.engine.options.prefix_cache:
            return 0
        n = min(len(prompt) - 1, len(self.full))
        a, b = np.asarray(prompt[:n]), np.asarray(self.full[:n])
        diff = np.flatnonzero(a != b)
        return int(diff[0]) if diff.size else n

    def _prefill(self, plans: list[_Plan], tree: DraftTree | None) -> tuple[_Batch, torch.Tensor]:
        """One forward pass over every row's new tokens (+ the draft tree)."""
        state = self._prefix_state(plans)
        ids, pos, valid = _right_aligned(plans, self.engine.pad)
        anc = None
        if tree is not None:
            depth = torch.tensor(tree.depths)
            ids = torch.cat([ids, torch.tensor(tree.tokens).expand(len(plans), -1)], 1)
            pos = torch.cat([pos, torch.tensor([p.length - 1 for p in plans])[:, None] + depth], 1)
            valid = torch.cat([valid, torch.ones(len(plans), len(tree), dtype=torch.bool)], 1)
            anc = torch.from_numpy(tree.ancestry())
        self.stats.batch_sizes.append(len(plans))
        return state, self._forward(state, ids, pos, valid, anc)

    def _forward(
        self,
        state: _Batch,
        ids: torch.Tensor,
        pos: torch.Tensor,
        valid: torch.Tensor,
        anc: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Run the base model on new slots; returns their final hidden states."""
        device = self.engine.torch_device
        ids, pos, valid = ids.to(device), pos.to(device), valid.to(device)
        state.slots = state.slots.extend(pos, valid)
        mask = build_mask(
            self.engine.mask_spec, state.slots, pos, None if anc is None else anc.to(device)
        )
        out = self.engine.base(
            input_ids=ids, position_ids=pos.clamp(min=0), attention_mask=mask,
            cache=state.cache, use_cache=True,
        )  # fmt: skip
        self.stats.forward_passes += ids.shape[0]
        self.stats.tokens_computed += ids.numel()
        return out.last_hidden_state

    def _prefix_state(self, plans: list[_Plan]) -> _Batch:
        """A batch cache holding the shared full-context slots, each row seeing what it keeps."""
        device, rows, longest = self.engine.torch_device, len(plans), max(p.reach for p in plans)
        cache = DynamicCache()
        if longest:
            for layer, (k, v) in enumerate(self._full_cache()):
                cache.update(_rows(k, longest, rows), _rows(v, longest, rows), layer)
        pos = torch.arange(longest, device=device).expand(rows, -1)
        valid = torch.zeros((rows, longest), dtype=torch.bool)
        for r, plan in enumerate(plans):
            if isinstance(plan.keep, int):
                valid[r, : plan.keep] = True
            else:
                valid[r, : plan.reach] = torch.from_numpy(plan.keep)
        lengths = [p.length for p in plans]
        slots = Slots(pos, valid.to(device))
        return _Batch(cache, slots, lengths, [[] for _ in plans], list(range(rows)))

    def _full_cache(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The full-context prompt's KV cache, computed once per job."""
        if self._full_kv is None:
            device = self.engine.torch_device
            empty = Slots(
                torch.zeros(1, 0, dtype=torch.long, device=device),
                torch.zeros(1, 0, dtype=torch.bool, device=device),
            )
            state = _Batch(DynamicCache(), empty, [len(self.full)], [[]], [0])
            n = len(self.full)
            self._forward(
                state,
                torch.tensor([self.full]),
                torch.arange(n)[None],
                torch.ones(1, n, dtype=torch.bool),
            )
            self._full_kv = [(layer.keys, layer.values) for layer in state.cache.layers]
        return self._full_kv


def _rows(cached: torch.Tensor, length: int, rows: int) -> torch.Tensor:
    return cached[:, :, :length].expand(rows, -1, -1, -1).contiguous()


def _right_aligned(plans: list[_Plan], pad: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each row's new tokens right-aligned in one width (left padding invalid)."""
    rows, width = len(plans), max(len(p.new) for p in plans)
    ids = torch.full((rows, width), pad, dtype=torch.long)
    pos = torch.zeros((rows, width), dtype=torch.long)
    valid = torch.zeros((rows, width), dtype=torch.bool)
    for r, plan in enumerate(plans):
        n = len(plan.new)
        ids[r, width - n :] = torch.tensor(plan.new)
        pos[r, width - n :] = torch.arange(plan.start, plan.length)
        valid[r, width - n :] = True
    return ids, pos, valid


def _on_path(tree: DraftTree, walks: list[Walk], device: torch.device) -> torch.Tensor:
    """Per row, which tree slots stay visible after verification: the accepted path."""
    anc = torch.from_numpy(tree.ancestry())
    none = torch.zeros(len(tree), dtype=torch.bool)
    return torch.stack([anc[w.last_node] if w.last_node >= 0 else none for w in walks]).to(device)


def _usable_backend(loaded: LoadedModel) -> str:
    """Exact prefix reuse and tree verification need arbitrary masks, which FlashAttention's
    varlen kernels cannot express: such models run on SDPA (itself fused on CUDA)."""
    if loaded.attention_backend not in ("sdpa", "eager"):
        loaded.model.set_attn_implementation("sdpa")
        return "sdpa"
    return loaded.attention_backend


def _eos_ids(model: object, tokenizer: object) -> set[int]:
    config_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = set(config_eos if isinstance(config_eos, list) else [config_eos])
    ids.add(getattr(tokenizer, "eos_token_id", None))
    return {int(i) for i in ids if i is not None}


def _pad_id(tokenizer: object, eos: set[int]) -> int:
    for name in ("pad_token_id", "unk_token_id"):
        value = getattr(tokenizer, name, None)
        if value is not None:
            return int(value)
    return min(eos)


def _kv_bytes_per_token(config: object, dtype: torch.dtype) -> int:
    layers = int(getattr(config, "num_hidden_layers", 12))
    heads = int(
        getattr(config, "num_key_value_heads", None) or getattr(config, "num_attention_heads", 8)
    )
    hidden = int(getattr(config, "hidden_size", 512))
    head_dim = int(
        getattr(config, "head_dim", None)
        or hidden // int(getattr(config, "num_attention_heads", 8))
    )
    return 2 * layers * heads * head_dim * torch.finfo(dtype).bits // 8
