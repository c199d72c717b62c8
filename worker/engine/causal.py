"""Decoder-only engine (Llama, Gemma, SmolLM): exact greedy answers with shared work.

A batch of coalitions is packed into one cache row as a tree (``packing.PackedTree``):
each coalition reuses the full-context KV cache up to where its prompt first differs from
it; the rest of the prompts form a prefix tree, so tokens coalitions share are computed
once; a copy of the job's answer tree hangs below each prompt as the speculative draft,
all in one forward pass. Decoding continues only where greedy decoding leaves the tree,
with look-up drafts (``lookup.follow``) verified in each step. The vocabulary projection
runs only where a next token is needed.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from transformers import DynamicCache

from worker.engine.attend import MaskSpec, build_mask
from worker.engine.base import Engine, EngineOptions, EngineSession, check_masks
from worker.engine.draft import DraftTree, Walk, greedy_walk
from worker.engine.errors import ContextTooLong
from worker.engine.layout import PromptLayout
from worker.engine.loading import LoadedModel
from worker.engine.lookup import corpus_of, follow
from worker.engine.memory import kv_bytes_per_token, split_on_oom, token_budget
from worker.engine.packing import PackedTree, shared_prefix, split_rows
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
        self.kv_bytes = kv_bytes_per_token(config, self.model.dtype)
        self.key_cost = _key_cost(config, self.base)
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
        head: Any = self.model.get_output_embeddings()  # type: ignore[no-untyped-call]
        logits: torch.Tensor = head(hidden).float()
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

    @property
    def branch_key(self) -> Hashable:
        """Plans with equal keys see the same full-context slots (and may share nodes)."""
        return self.keep if isinstance(self.keep, int) else self.keep.tobytes()

    def extended(self, tokens: tuple[int, ...]) -> _Plan:
        return _Plan(self.key, self.keep, self.new + tokens, self.start)


@dataclass
class _Batch:
    """A packed batch mid-decoding: its cache rows (one node tree each), and per coalition
    its row, the last computed node on its answer's path, its output so far and its
    look-up corpus (only decoding needs one; teacher forcing leaves it empty)."""

    rows: list[PackedTree]
    cache: DynamicCache
    plans: list[_Plan]
    row_of: list[int]
    last: list[int]
    outputs: list[list[int]]
    corpora: list[np.ndarray]

    def tree(self, coalition: int) -> PackedTree:
        return self.rows[self.row_of[coalition]]

    def at(self, coalition: int, nodes: Sequence[int]) -> list[tuple[int, int]]:
        return [(self.row_of[coalition], node) for node in nodes]


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
        self.lookup_proposed = 0
        self.lookup_accepted = 0
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
        """Prompts, shared prefixes and one copy of the draft tree per coalition in one pass;
        then cached steps (with look-up drafts) where greedy decoding left the tree."""
        tree = self.tree if self.engine.options.speculative and len(self.tree) else None
        state = self._pack([p for _, p in batch], extra=len(tree) if tree is not None else 0)
        self.stats.batch_sizes.append(len(batch))
        drafts = [self._hang(state, c, tree) for c in range(len(state.plans))]
        hidden, first = self._run(state, len(state.plans))
        asked = [state.at(c, [state.last[c], *nodes]) for c, nodes in enumerate(drafts)]
        argmax = self._argmax(hidden, first, asked)
        for c, (nodes, greedy) in enumerate(zip(drafts, argmax, strict=True)):
            walk = self._walk(tree, greedy)
            state.outputs[c] = walk.tokens
            if walk.last_node >= 0:
                state.last[c] = nodes[walk.last_node]
        answers = list(self._answer_ids.values())
        state.corpora = [corpus_of([self._prompt(p), *answers]) for p in state.plans]
        self._continue(state)
        for plan, output in zip(state.plans, state.outputs, strict=True):
            self._remember(plan.key, output)
        return []

    def _hang(self, state: _Batch, coalition: int, tree: DraftTree | None) -> list[int]:
        """A copy of the draft tree below the coalition's last prompt token (never shared:
        its states depend on that prompt)."""
        if tree is None:
            return []
        packed, leaf = state.tree(coalition), state.last[coalition]
        length = state.plans[coalition].length
        branch, nodes = packed.branches[leaf], list[int]()
        for token, parent, depth in zip(tree.tokens, tree.parents, tree.depths, strict=True):
            above = nodes[parent] if parent >= 0 else leaf
            nodes.append(packed.add(branch, above, token, length - 1 + depth, share=False))
        return nodes

    def _walk(self, tree: DraftTree | None, argmax: list[int]) -> Walk:
        walk = greedy_walk(tree or DraftTree(0), argmax, self.stop.done)
        self.stats.draft_tokens_proposed += walk.proposed
        self.stats.draft_tokens_accepted += walk.accepted
        return walk

    def _continue(self, state: _Batch) -> None:
        """Cached greedy steps for the rows still going. Each step also proposes a look-up
        draft per row (``lookup.follow``) and keeps the part greedy decoding agrees with."""
        while True:
            active = [r for r, out in enumerate(state.outputs) if not self.stop.done(out)]
            if not active:
                return
            chains, guesses = [], []
            for c in active:
                out, last, packed = state.outputs[c], state.last[c], state.tree(c)
                guess = self._guess(state.corpora[c], out)
                start = state.plans[c].length + len(out) - 1
                chain = [out[-1], *guess]
                chains.append(packed.add_path(packed.branches[last], last, chain, start, False))
                guesses.append(guess)
            hidden, first = self._run(state, len(active))
            asked = [state.at(c, chain) for c, chain in zip(active, chains, strict=True)]
            for c, chain, guess, greedy in zip(
                active, chains, guesses, self._argmax(hidden, first, asked), strict=True
            ):
                state.last[c] = chain[self._accept(state.outputs[c], guess, greedy)]

    def _guess(self, corpus: np.ndarray, out: list[int]) -> list[int]:
        room = self.max_new_tokens - len(out) - 1
        guess = follow(corpus, out, min(self.engine.options.lookup_tokens, room))
        self.lookup_proposed += len(guess)
        return guess

    def _accept(self, out: list[int], guess: list[int], greedy: list[int]) -> int:
        """Append greedy tokens while they confirm the guess; returns how many guessed
        tokens were accepted (the index of the last node on the answer's path)."""
        taken = 0
        while True:
            token = greedy[taken]
            out.append(token)
            if self.stop.done(out) or taken >= len(guess) or token != guess[taken]:
                self.lookup_accepted += taken
                return taken
            taken += 1

    def _argmax(
        self, hidden: torch.Tensor, first: int, asked: list[list[tuple[int, int]]]
    ) -> list[list[int]]:
        """Greedy next tokens after the given (row, node)s; the output head runs on those only."""
        tokens = self.engine.logits(_gather(hidden, first, asked)).argmax(-1).tolist()
        out, at = [], 0
        for nodes in asked:
            out.append(tokens[at : at + len(nodes)])
            at += len(nodes)
        return out

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
        state = self._pack([p.extended(target) for _, p in batch])
        self.stats.batch_sizes.append(len(batch))
        hidden, first = self._run(state, len(batch))
        n = len(target)
        asked = [
            state.at(c, state.tree(c).paths[leaf][-n - 1 : -1].tolist())
            for c, leaf in enumerate(state.last)
        ]
        logits = self.engine.logits(_gather(hidden, first, asked)).view(len(asked), n, -1)
        chosen = torch.log_softmax(logits, -1)[:, torch.arange(n), torch.tensor(target)]
        return chosen.double().sum(-1).tolist()

    def _tokenize_answer(self, answer: str) -> tuple[int, ...]:
        eos = min(self.engine.eos) if self.engine.eos else None
        ids = self.engine.codec.encode(answer).ids
        return ids + ((eos,) if eos is not None else ())

    # --- shared forward machinery --------------------------------------------------------

    def _batches(self, plans: Sequence[_Plan], extra: int) -> list[list[tuple[int, _Plan]]]:
        """Batches of (index, plan) in prefix order, so that coalitions sharing leading
        tokens land together; a batch holds what fits the memory budget once shared
        tokens are counted once (plus ``extra`` draft or target tokens per row)."""
        order = sorted(range(len(plans)), key=lambda i: (plans[i].branch_key, plans[i].new))
        context = len(self.full) + self.max_new_tokens + extra
        budget = self.engine.options.batch_tokens or token_budget(self.engine, context)
        share = self.engine.options.prefix_tree
        out: list[list[tuple[int, _Plan]]] = []
        current: list[tuple[int, _Plan]] = []
        used = 0
        for i in order:
            plan = plans[i]
            cost = len(plan.new) + extra
            if share and current and current[-1][1].branch_key == plan.branch_key:
                cost -= shared_prefix(current[-1][1].new, plan.new)
            if current and (used + cost > budget or len(current) >= self.engine.options.max_batch):
                out.append(current)
                current, used, cost = [], 0, len(plan.new) + extra
            current.append((i, plan))
            used += cost
        if current:
            out.append(current)
        return out

    def _reuse(self, prompt: tuple[int, ...]) -> int:
        """How many leading tokens the full-context cache covers (at least one is left)."""
        if not self.engine.options.prefix_cache:
            return 0
        n = min(len(prompt) - 1, len(self.full))
        a, b = np.asarray(prompt[:n]), np.asarray(self.full[:n])
        diff = np.flatnonzero(a != b)
        return int(diff[0]) if diff.size else n

    def _pack(self, plans: list[_Plan], extra: int = 0) -> _Batch:
        """Cache rows holding the full-context slots the plans reuse, then their prompts'
        new tokens as prefix trees (shared leading tokens computed once when
        ``prefix_tree``); coalitions are spread over rows by ``packing.split_rows``."""
        reach = max(p.reach for p in plans)
        share = self.engine.options.prefix_tree
        branches = [p.branch_key if share else i for i, p in enumerate(plans)]
        groups = split_rows(branches, [p.new for p in plans], extra, reach, self.engine.key_cost)
        cache = DynamicCache()
        if reach:
            for layer, (k, v) in enumerate(self._full_cache()):
                cache.update(_rows(k, reach, len(groups)), _rows(v, reach, len(groups)), layer)
        rows = [PackedTree(reach) for _ in groups]
        row_of, leaves = [0] * len(plans), [0] * len(plans)
        for r, group in enumerate(groups):
            for c in group:
                plan, tree = plans[c], rows[r]
                branch = tree.branch(plan.keep, plan.branch_key if share else None)
                leaves[c] = tree.add_path(branch, -1, plan.new, plan.start, share)[-1]
                row_of[c] = r
        return _Batch(rows, cache, plans, row_of, leaves, [[] for _ in plans], [])

    def _prompt(self, plan: _Plan) -> tuple[int, ...]:
        if isinstance(plan.keep, int):
            return self.full[: plan.start] + plan.new
        return self.full

    def _run(self, state: _Batch, coalitions: int) -> tuple[torch.Tensor, int]:
        """Compute every row's pending nodes (rows padded to one width) in one forward pass
        over ``coalitions`` coalitions; returns their final hidden states (rows, width,
        hidden) and the node index of the first column."""
        device, rows = self.engine.torch_device, state.rows
        first = rows[0].computed
        width = max(len(tree) for tree in rows)
        for tree in rows:
            tree.pad_to(width, self.engine.pad)
        queries = range(first, width)
        ids = torch.tensor([tree.tokens[first:] for tree in rows], device=device)
        pos = torch.tensor([tree.positions[first:] for tree in rows], device=device)
        mask = build_mask(self.engine.mask_spec, rows, queries, device)
        out = self.engine.base(
            input_ids=ids, position_ids=pos, attention_mask=mask, cache=state.cache,
            use_cache=True,
        )  # fmt: skip
        for tree in rows:
            tree.computed = width
        self.stats.forward_passes += coalitions
        self.stats.tokens_computed += ids.numel()
        return out.last_hidden_state, first

    def _full_cache(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The full-context prompt's KV cache, computed once per job."""
        if self._full_kv is None:
            tree = PackedTree(0)
            tree.add_path(tree.branch(0), -1, self.full, 0, share=False)
            state = _Batch([tree], DynamicCache(), [], [], [], [], [])
            self._run(state, 1)
            layers: list[Any] = list(state.cache.layers)  # attention layers: keys and values set
            self._full_kv = [(layer.keys, layer.values) for layer in layers]
        return self._full_kv


def _rows(cached: torch.Tensor, length: int, rows: int) -> torch.Tensor:
    return cached[:, :, :length].expand(rows, -1, -1, -1).contiguous()


def _gather(hidden: torch.Tensor, first: int, asked: list[list[tuple[int, int]]]) -> torch.Tensor:
    """The hidden states of the asked (row, node)s, in order."""
    rows = [row for nodes in asked for row, _ in nodes]
    columns = [node - first for nodes in asked for _, node in nodes]
    return hidden[rows, columns]


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


def _key_cost(config: object, base: torch.nn.Module) -> float:
    """Attending to one key, relative to computing one token: attention multiply-adds per
    key (scores and values, every head and layer) over the weight multiply-adds per token."""
    layers = int(getattr(config, "num_hidden_layers", 12))
    heads = int(getattr(config, "num_attention_heads", 8))
    hidden = int(getattr(config, "hidden_size", 512))
    head_dim = int(getattr(config, "head_dim", None) or hidden // heads)
    weights = sum(
        p.numel() for name, p in base.named_parameters() if p.dim() == 2 and "embed" not in name
    )
    return 2 * layers * heads * head_dim / max(weights, 1)
