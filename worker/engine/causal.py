"""Decoder-only engine (Llama, Gemma, SmolLM): exact greedy answers with shared work.

Every prompt token the job computes is kept in its prefix store (``prefixes.PrefixStore``):
the full context first, then what each batch adds. A coalition reuses the longest stored
prefix of its prompt and computes the rest, together with a draft of its likeliest
answers (``draft.AnswerBook``), in one forward pass; decoding continues only where greedy
decoding leaves the draft, with look-up drafts (``lookup.follow``) verified in each step.
The vocabulary projection runs only where a next token is needed, and an fp32 head on a
CPU is screened in bf16 with the candidates recomputed in fp32 (``screened_head``).

How a batch sits in memory is the layout's business: ``tree_batch`` packs coalitions into
rows as prefix trees under explicit masks (SDPA; shared prompt tokens computed once, a
draft tree per coalition), ``linear_batch`` gives each coalition a plain row with one
draft chain (what FlashAttention 2 can run). ``EngineOptions.layout`` picks one; by
default the linear layout where FlashAttention 2 is available, the tree layout elsewhere.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Hashable, Sequence
from dataclasses import replace
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import torch

from worker.engine import attention
from worker.engine.attend import MaskSpec
from worker.engine.base import Engine, EngineOptions, EngineSession, check_masks
from worker.engine.bf16_twin import applies, bf16_copy, bf16_pays
from worker.engine.draft import DRAFT_MASS, FAST_DRAFT_MASS, AnswerBook, DraftTree, Walk, step
from worker.engine.errors import ContextTooLong
from worker.engine.flash import FLASH, pick_kernel
from worker.engine.kvcache import KV
from worker.engine.layout import PromptLayout
from worker.engine.linear_batch import LinearBatch
from worker.engine.loading import LoadedModel
from worker.engine.lookup import corpus_of, follow
from worker.engine.memory import (
    attention_costs,
    head_read_rows,
    kv_bytes_per_token,
    single_coalition,
    split_on_oom,
    store_slots,
    token_budget,
)
from worker.engine.packing import shared_prefix
from worker.engine.plan import NO_SLOTS, Plan, Slots
from worker.engine.prefixes import PrefixStore
from worker.engine.prompts import Codec
from worker.engine.screened_head import ScreenedHead, calibrate
from worker.engine.stopping import StopRule, newline_ids
from worker.engine.tree_batch import TreeBatch, full_context
from worker.shapley import segment
from worker.shapley.oracle import Masks, OracleStats
from worker.shapley.units import Document, Masking, Unit

MIN_BATCH = 4  # the smallest batch a growing job starts with
_NO_DRAFT = DraftTree(0)


class RowBatch(Protocol):
    """What the session needs from a batch layout (``TreeBatch``, ``LinearBatch``)."""

    def prompt_pass(self) -> list[torch.Tensor]: ...
    def prompt_kv(self, c: int) -> list[KV]: ...
    def settle(self, c: int, draft_node: int) -> None: ...
    def step(self, chains: dict[int, list[int]]) -> dict[int, torch.Tensor]: ...
    def advance(self, c: int, taken: int) -> None: ...
    def forced(self, n: int) -> torch.Tensor: ...


class CausalEngine(Engine):
    """A resident decoder-only model."""

    family = "causal"

    def __init__(self, loaded: LoadedModel, name: str, options: EngineOptions | None = None):
        self.name, self.model, self.tokenizer = name, loaded.model, loaded.tokenizer
        self.device, self.torch_device = str(loaded.device), loaded.device
        self.sdpa_backend = _usable_backend(loaded)
        self.kernel_name, self.kernel = pick_kernel(loaded.device)
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
        self.layers = int(config.num_hidden_layers)
        heads = int(config.num_attention_heads)
        self.kv_heads = int(getattr(config, "num_key_value_heads", None) or heads)
        self.head_dim = int(getattr(config, "head_dim", None) or config.hidden_size // heads)
        costs = attention_costs(config, self.base, self.model.dtype, self.torch_device)
        self.key_cost, self.slot_cost = costs
        self.plain_read_rows = head_read_rows(self.model.dtype, self.torch_device)
        self.screen, self.screen_read_rows = _screened_head(self.model, config)
        self._bf16_model: Any = None  # fast mode's bf16 copy, made when first wanted
        self._bf16_pays: bool | None = None
        self._warm_up()

    @property
    def linear(self) -> bool:
        """Whether batches use the linear layout (FlashAttention's) rather than trees."""
        layout = self.options.layout
        if layout == "auto":
            return self.kernel_name == FLASH and not self.options.fast
        return layout == "linear" and not self.options.fast

    @property
    def attention_backend(self) -> str:  # type: ignore[override]  # an attribute elsewhere
        """The kernel coalitions run on: the linear layout's, or the tree layout's SDPA."""
        return self.kernel_name if self.linear else self.sdpa_backend

    def attention_mass(self, question: str, documents: Sequence[Document]) -> list[float]:
        """Per document, the attention share of the last prompt position (the evaluation's
        attention baseline), on the prompt this engine's sessions build."""
        from worker.engine.attention_mass import attention_mass

        return attention_mass(
            self.model, self.tokenizer, question, documents, self.options.prompt_style
        )

    def open_session(
        self,
        question: str,
        documents: list[Document],
        *,
        masking: Masking = "remove",
        max_new_tokens: int = 16,
        fast: bool | None = None,
    ) -> CausalSession:
        layout = PromptLayout(
            self.codec, question, documents, masking, self.pad, self.options.prompt_style
        )
        return CausalSession(self._session_engine(fast), layout, max_new_tokens)

    def _session_engine(self, fast: bool | None) -> CausalEngine:
        """What a session runs on: this engine, its bf16 twin in fast mode, or a shallow
        copy whose options say fast where the job asked and the engine's options do not
        (the resident engine's options are never changed for one job)."""
        options = self.options
        if fast is not None and fast != options.fast:
            options = replace(options, fast=fast)
        engine = self.bf16_twin() if options.fast and self.fast_in_bf16 else self
        if options is not self.options:
            engine = copy.copy(engine)
            engine.options = options
        return engine

    def count_tokens(self, question: str, documents: list[Document]) -> int:
        style = self.options.prompt_style
        return len(PromptLayout(self.codec, question, documents, "remove", self.pad, style).full())

    @property
    def fast_in_bf16(self) -> bool:
        """Whether fast mode runs on the bf16 copy of an fp32 CPU model (``bf16_twin``):
        ``EngineOptions.fast_bf16`` "on", or "auto" where bf16 products measured faster
        (timed once, at the first fast-mode session)."""
        choice = self.options.fast_bf16
        if choice == "off" or not applies(self.model):
            return False
        if choice == "on":
            return True
        if self._bf16_pays is None:
            width = int(self.model.config.get_text_config().hidden_size)
            self._bf16_pays = bf16_pays(width)
        return self._bf16_pays

    def bf16_twin(self) -> CausalEngine:
        """This engine over the bf16 copy of its model (made once, kept resident): what
        fast-mode sessions run on when ``fast_in_bf16``. Its head is the copy's (bf16
        logits, no screening: the tokens are the bf16 model's own)."""
        if self._bf16_model is None:
            self._bf16_model = bf16_copy(self.model)
        twin = copy.copy(self)
        twin.model = self._bf16_model
        twin.base = getattr(twin.model, twin.model.base_model_prefix)
        twin.mask_spec = MaskSpec.for_model(twin.model)
        config = twin.model.config.get_text_config()
        twin.kv_bytes = kv_bytes_per_token(config, torch.bfloat16)
        twin.plain_read_rows = head_read_rows(torch.bfloat16, self.torch_device)
        twin.screen, twin.screen_read_rows = None, None
        return twin

    @property
    def screening(self) -> bool:
        """Whether greedy tokens come from the bf16-screened head (``screened_head``)."""
        choice, pays = self.options.screened_head, self.screen_read_rows is not None
        return self.screen is not None and (choice == "on" or choice == "auto" and pays)

    @property
    def head_read_rows(self) -> int:
        """Rows of a head call that cost as much as the call on one row (its weights' read)."""
        if self.screening:
            return self.screen_read_rows or 1  # forced on where it measured slower: unknown
        return self.plain_read_rows

    def greedy_tokens(self, hidden: torch.Tensor) -> list[int]:
        """The greedy next token after each hidden state; the output head runs on those only."""
        if self.screening:
            assert self.screen is not None
            return self.screen.argmax(hidden).tolist()
        return self.logits(hidden).argmax(-1).tolist()

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


class CausalSession(EngineSession):
    """One job on a :class:`CausalEngine` (see the module docstring for what is shared)."""

    def __init__(self, engine: CausalEngine, layout: PromptLayout, max_new_tokens: int):
        self.engine, self.layout, self.max_new_tokens = engine, layout, max_new_tokens
        self.full = layout.full()
        if len(self.full) + max_new_tokens > engine.max_context_tokens:
            raise ContextTooLong(len(self.full) + max_new_tokens, engine.max_context_tokens)
        self.stats = OracleStats(
            attention_backend=engine.attention_backend, fast=engine.options.fast
        )
        self.book = AnswerBook()
        newline = engine.newline_ids if engine.options.stop_at_newline else frozenset()
        self.stop = StopRule(engine.tokenizer, frozenset(engine.eos), max_new_tokens, newline)
        self.lookup_proposed = 0
        self.lookup_accepted = 0
        self._memo: dict[Hashable, tuple[int, ...]] = {}
        self._answer_ids: dict[str, tuple[int, ...]] = {}
        self.store = PrefixStore(max(store_slots(engine), len(self.full)))

    # --- the Oracle protocol -------------------------------------------------------------

    def answers(self, units: Sequence[Unit], masks: Masks) -> list[str]:
        plans = self.plans(units, masks)
        for plan in plans:
            if plan.key in self._memo:  # decoded for another unit list: it votes here too
                self.book.record(plan.game, plan.mask, self._memo[plan.key])
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
            batch = [(i, self._replan(p)) for i, p in batch]
            scores = split_on_oom(lambda b: self._score_batch(b, target), batch)
            out[[i for i, _ in batch]] = scores
        return out

    def answer_tokens(self, units: Sequence[Unit], masks: Masks) -> list[tuple[int, ...]]:
        """The generated token ids per coalition, with the EOS or newline token that ended it."""
        self.answers(units, masks)
        return [self._memo[p.key] for p in self.plans(units, masks)]

    def prompt_ids(self, units: Sequence[Unit], mask: np.ndarray) -> tuple[int, ...]:
        """The coalition's prompt ids (what a plain ``generate`` reference must be given)."""
        return self.layout.ids(units, mask)

    # --- plans ---------------------------------------------------------------------------

    def plans(self, units: Sequence[Unit], masks: Masks) -> list[Plan]:
        """Exact mode: the coalition's own prompt after the longest prefix the store holds.
        Fast mode: the full-context slots of what it keeps, then the tail."""
        rows = check_masks(units, masks)
        options = self.engine.options
        if options.fast or options.prefix_cache:
            self._compute_full()
        game = tuple((u.document, u.start, u.end) for u in units)
        if options.fast:
            tail = len(self.full) - len(self.layout.tail)
            plans = []
            for row in rows:
                keep = np.flatnonzero(self.layout.kept_slots(units, row)).astype(np.int64)
                key = ("fast", keep.tobytes())
                plans.append(Plan(key, self.full, keep, self.layout.tail, tail, 0, game, row))
            return plans
        prompts = [self.layout.ids(units, row) for row in rows]
        return [self._replan(Plan(p, p, NO_SLOTS, p, 0, 0, game, row))
                for p, row in zip(prompts, rows, strict=True)]  # fmt: skip

    def _replan(self, plan: Plan) -> Plan:
        """An exact plan against what the store holds now (earlier batches of this call
        may have stored more of its prompt since it was first planned)."""
        if self.engine.options.fast:
            return plan
        keep = self._match(plan.prompt)
        new = plan.prompt[len(keep) :]
        stored = len(new) if self.engine.options.prefix_tree else 0
        return replace(plan, keep=keep, new=new, start=len(keep), stored=stored)

    def _match(self, prompt: tuple[int, ...]) -> Slots:
        """Stored slots covering the prompt's leading tokens (at least one token is left)."""
        if not self.engine.options.prefix_cache:
            return NO_SLOTS
        return self.store.match(prompt, len(prompt) - 1)

    def _compute_full(self) -> None:
        """The full-context prompt, computed once per job as the store's first chain."""
        if not len(self.store):
            states = single_coalition(lambda: full_context(self.engine, self.full, self.stats))
            self.store.add(-1, self.full, states, 0)

    def _batches(
        self, plans: Sequence[Plan], extra: int, grow: bool = False
    ) -> list[list[tuple[int, Plan]]]:
        """Batches of (index, plan) in prompt order, so that coalitions sharing leading
        tokens land together (and later batches find earlier ones' prompts in the store); a
        batch holds what fits the memory budget once shared tokens are counted once (plus
        ``extra`` draft or target tokens per row). ``grow``: early in a job a batch holds at
        most twice as many coalitions as were decoded before it, so that the answers the
        drafts are made of accumulate before the big batches run."""
        order = sorted(range(len(plans)), key=lambda i: (plans[i].prompt, plans[i].branch_key))
        context = len(self.full) + self.max_new_tokens + extra
        options = self.engine.options
        budget = options.batch_tokens or token_budget(self.engine, context)
        share = options.prefix_tree and not self.engine.linear
        out: list[list[tuple[int, Plan]]] = []
        current: list[tuple[int, Plan]] = []
        used, known = 0, len(self._memo)
        for i in order:
            plan = plans[i]
            cost = len(plan.new) + extra
            if share and current and current[-1][1].branch_key == plan.branch_key:
                cost -= shared_prefix(current[-1][1].new, plan.new)
            cap = min(options.max_batch, max(MIN_BATCH, 2 * known)) if grow else options.max_batch
            if current and (used + cost > budget or len(current) >= cap):
                out.append(current)
                known += len(current)
                current, used, cost = [], 0, len(plan.new) + extra
            current.append((i, plan))
            used += cost
        if current:
            out.append(current)
        return out

    # --- greedy answers ------------------------------------------------------------------

    def _decode(self, plans: list[Plan]) -> None:
        for batch in self._batches(plans, extra=self._draft_size(), grow=True):
            batch = [(i, self._replan(p)) for i, p in batch]
            split_on_oom(self._decode_batch, batch)

    def _draft_size(self) -> int:
        options = self.engine.options
        return self.book.nodes(options.draft_nodes) if options.speculative else 0

    def _decode_batch(self, batch: list[tuple[int, Plan]]) -> list[None]:
        """Prompts and each coalition's draft in one pass; then cached steps (with look-up
        drafts) for the coalitions whose greedy answer left their draft."""
        plans = [p for _, p in batch]
        drafts = [self._draft(p) for p in plans]
        rows = self._layout(plans, drafts)
        self.stats.batch_sizes.append(len(batch))
        hidden = rows.prompt_pass()
        self._store_prompts(rows, plans)
        outputs: list[list[int]] = []
        for c, walk in enumerate(self._walks(drafts, hidden)):
            outputs.append(walk.tokens)
            rows.settle(c, walk.last_node)
        answers = list(self._answer_ids.values())
        corpora = [corpus_of([p.prompt, *answers]) for p in plans]
        self._continue(rows, outputs, corpora)
        for plan, output in zip(plans, outputs, strict=True):
            self._remember(plan, output)
        return []

    def _layout(self, plans: list[Plan], drafts: list[DraftTree | None]) -> RowBatch:
        engine = self.engine
        if engine.linear:
            room = self.max_new_tokens + engine.options.lookup_tokens + 2
            return LinearBatch(engine, self.store, plans, drafts, engine.kernel, room, self.stats)
        return TreeBatch(engine, self.store, plans, drafts, engine.options.prefix_tree, self.stats)

    def _draft(self, plan: Plan) -> DraftTree | None:
        """The coalition's draft: the job's likeliest answers for it (the linear layout
        verifies only the likeliest one); None: no speculation."""
        options = self.engine.options
        if not options.speculative or not self.book.answers:
            return None
        if self.engine.linear:
            chain = DraftTree(max_nodes=options.draft_nodes)
            chain.add(self.book.ranked(plan.game, plan.mask)[0])
            return chain
        mass = FAST_DRAFT_MASS if options.fast else DRAFT_MASS
        return self.book.draft(plan.game, plan.mask, options.draft_nodes, mass)

    def _store_prompts(self, rows: RowBatch, plans: list[Plan]) -> None:
        """Add the prompt tokens the pass just computed to the prefix store."""
        for c, plan in enumerate(plans):
            if plan.stored:
                parent = int(plan.keep[-1]) if plan.reach else -1
                self.store.add(parent, plan.new[: plan.stored], rows.prompt_kv(c), plan.start)

    def _walks(self, drafts: list[DraftTree | None], hidden: list[torch.Tensor]) -> list[Walk]:
        """Greedy walks through every coalition's draft (``hidden[c]``: states after its
        prompt and after each draft node). The output head runs on every state at once when
        drafts are mostly paths (``_greedy``), else one level of all walks at a time,
        on the states the walks reach only: projecting every node of bushy drafts would cost
        Gemma's 262k-word head more than its whole body for the nodes no walk takes."""
        walks = [Walk([], -1, 0, 0) for _ in drafts]
        going = list(range(len(drafts)))
        levels = 1 + max((max(d.depths, default=-1) + 1 for d in drafts if d), default=0)
        greedy = self._greedy(dict(enumerate(hidden)), levels)
        while going:
            tokens = greedy(going, [walks[c].last_node + 1 for c in going])
            going = [
                c for c, token in zip(going, tokens, strict=True)
                if step(walks[c], drafts[c] or _NO_DRAFT, token, self.stop.done)
            ]  # fmt: skip
        for walk in walks:
            self.stats.draft_tokens_proposed += walk.proposed
            self.stats.draft_tokens_accepted += walk.accepted
        return walks

    def _continue(self, rows: RowBatch, outputs: list[list[int]], corpora: list[Any]) -> None:
        """Cached greedy steps for the coalitions still going. Each step also proposes a
        look-up draft per coalition (``lookup.follow``) and keeps what greedy agrees with."""
        while True:
            active = [c for c, out in enumerate(outputs) if not self.stop.done(out)]
            if not active:
                return
            guesses = {c: self._guess(corpora[c], outputs[c]) for c in active}
            hidden = rows.step({c: [outputs[c][-1], *guesses[c]] for c in active})
            for c, taken in self._accepts(outputs, guesses, hidden).items():
                rows.advance(c, taken)

    def _guess(self, corpus: np.ndarray, out: list[int]) -> list[int]:
        room = self.max_new_tokens - len(out) - 1
        guess = follow(corpus, out, min(self.engine.options.lookup_tokens, room))
        self.lookup_proposed += len(guess)
        return guess

    def _accepts(
        self,
        outputs: list[list[int]],
        guesses: dict[int, list[int]],
        hidden: dict[int, torch.Tensor],
    ) -> dict[int, int]:
        """Append greedy tokens while they confirm each coalition's guess; per coalition how
        many guessed tokens were accepted (the index of the last chain node on its answer's
        path). Like ``_walks``, the output head runs only where a walk has got to."""
        taken = dict.fromkeys(guesses, 0)
        going = list(guesses)
        levels = 1 + max((len(g) for g in guesses.values()), default=0)
        greedy = self._greedy(hidden, levels)
        while going:
            still = []
            for c, token in zip(going, greedy(going, [taken[c] for c in going]), strict=True):
                out, guess = outputs[c], guesses[c]
                out.append(token)
                if self.stop.done(out) or taken[c] >= len(guess) or token != guess[taken[c]]:
                    self.lookup_accepted += taken[c]
                    continue
                taken[c] += 1
                still.append(c)
            going = still
        return taken

    def _greedy(
        self, hidden: dict[int, torch.Tensor], levels: int
    ) -> Callable[[list[int], list[int]], list[int]]:
        """The greedy token after state ``at[i]`` of coalition ``going[i]``, for walks over
        ``hidden`` (per coalition its candidate states) at most ``levels`` deep.

        Every candidate state is projected in one call when that is cheaper than a call
        per level of the walks on the states they reach: a call reads the whole output head
        (Gemma's: 671 MB in fp32, 335 MB screened), which costs as much as
        ``engine.head_read_rows`` rows of products, so the states no walk reaches are worth
        computing when there are fewer of them than the reads saved (per-coalition drafts
        and look-up chains are mostly single paths)."""
        states = list(hidden.values())
        spare = sum(int(h.shape[0]) for h in states) - len(states)
        if spare <= self.engine.head_read_rows * (levels - 1):
            ahead = dict(zip(hidden, self._argmax(states), strict=True))
            return lambda going, at: [ahead[c][i] for c, i in zip(going, at, strict=True)]

        def level(going: list[int], at: list[int]) -> list[int]:
            picked = [hidden[c][i : i + 1] for c, i in zip(going, at, strict=True)]
            return [token for [token] in self._argmax(picked)]

        return level

    def _argmax(self, hidden: list[torch.Tensor]) -> list[list[int]]:
        """Greedy next tokens after the given hidden states; the output head runs on those only."""
        tokens = self.engine.greedy_tokens(torch.cat(hidden))
        out, at = [], 0
        for states in hidden:
            out.append(tokens[at : at + len(states)])
            at += len(states)
        return out

    def _remember(self, plan: Plan, output: list[int]) -> None:
        answer = tuple(output)
        self._memo[plan.key] = answer
        self._answer_ids.setdefault(self._text(answer), answer)
        self.book.record(plan.game, plan.mask, answer)

    def _text(self, answer: tuple[int, ...]) -> str:
        return self.stop.text(answer)

    # --- teacher forcing -----------------------------------------------------------------

    def _score_batch(self, batch: list[tuple[int, Plan]], target: tuple[int, ...]) -> list[float]:
        plans = [p.extended(target) for _, p in batch]
        rows = self._layout(plans, [None] * len(plans))
        self.stats.batch_sizes.append(len(batch))
        rows.prompt_pass()
        self._store_prompts(rows, plans)
        n = len(target)
        logits = self.engine.logits(rows.forced(n))
        chosen = torch.log_softmax(logits, -1)[:, torch.arange(n), torch.tensor(target)]
        return chosen.double().sum(-1).tolist()

    def _tokenize_answer(self, answer: str) -> tuple[int, ...]:
        eos = min(self.engine.eos) if self.engine.eos else None
        ids = self.engine.codec.encode(answer).ids
        return ids + ((eos,) if eos is not None else ())


def _usable_backend(loaded: LoadedModel) -> str:
    """Exact prefix reuse and tree verification need arbitrary masks: models run on the
    engine's attention function (``attention``: SDPA under the tree layout's masks, the
    linear layout's kernel otherwise). Eager models stay eager."""
    if loaded.attention_backend == "eager":
        return "eager"
    return attention.install(loaded.model)


def _screened_head(model: Any, config: Any) -> tuple[ScreenedHead | None, int | None]:
    """The bf16-screened copy of an fp32 CPU model's output head and the rows a call on it
    is worth (None: it measured slower than the fp32 head here). No copy where it does not
    apply: bf16 or CUDA models (their head already is bf16), soft-capped heads."""
    head = model.get_output_embeddings()
    weight = getattr(head, "weight", None)
    if not (
        isinstance(weight, torch.Tensor)
        and weight.dtype == torch.float32
        and weight.device.type == "cpu"
        and getattr(head, "bias", None) is None
        and not getattr(config, "final_logit_softcapping", None)
    ):
        return None, None
    screen = ScreenedHead(weight)
    return screen, calibrate(screen)


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
