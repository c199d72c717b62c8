"""Encoder-decoder engine (T5, Flan-T5, FiD): joint mode and FiD mode.

Joint mode: one prompt; each coalition's encoder input is its masked prompt (removed
documents dropped, or removed tokens replaced by pad and masked out: positions kept), and
the encoder runs once per coalition, batched. FiD mode: each passage is encoded once with
the question when the session opens, and its cross-attention keys and values are computed
once; a coalition is only a mask over them (plus a question-only passage shown when
nothing else is), so the encoder never runs again in the job.

Decoding is greedy with speculation: every decoder call feeds each row its last token plus
a proposed continuation, the rest of the most frequent answer already generated in the job
that extends the row's answer so far (a prefix tree of answers), or where the tree has
none a look-up draft (``lookup.follow``: what followed the last generated tokens in the
job's answers or the coalition's passages; its length adapts to how often it is
accepted), and keeps the proposed tokens that equal greedy's. Rows sit at their own
positions in one lockstep batch, so rows that leave the draft at different points never
split the batch; finished rows drop out. In FiD the rows of a batch share one set of
cross-attention keys and values (each with its own mask), read once per call for all.

For T5 (``T5ForConditionalGeneration``, fp32/bf16) the forward pass is ``T5Kernel``: the
model's own modules called directly, the same operations as its SDPA forward minus what
the generic forward redoes on every call. Other encoder-decoder models use
``GenericKernel`` (plain ``model(...)`` calls without a decoder cache).
"""

from __future__ import annotations

from abc import abstractmethod
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from transformers import T5ForConditionalGeneration
from transformers.modeling_outputs import BaseModelOutput

from worker.engine.base import Engine, EngineOptions, EngineSession, check_masks
from worker.engine.errors import ContextTooLong, FastModeUnsupported
from worker.engine.layout import PromptLayout
from worker.engine.loading import LoadedModel
from worker.engine.lookup import corpus_of, follow
from worker.engine.memory import (
    kv_bytes_per_token,
    single_coalition,
    split_on_oom,
    token_budget,
)
from worker.engine.prompts import Codec, Encoded, PromptStyle, fid_passage
from worker.engine.stopping import StopRule, newline_ids
from worker.shapley import segment
from worker.shapley.oracle import Masks, OracleStats
from worker.shapley.units import Document, Masking, Unit

Key = tuple[int, ...]
Answer = tuple[int, ...]
BIAS_BYTES = 256 * 2**20  # T5Kernel keeps the encoder's position bias up to this size


# The joint T5 prompt stays the plain one: the few-shot format is for decoder-only base
# models, where it was measured (docs/results.md, "Prompts"); no real T5 runs here to
# measure it on, and a byte-level tokenizer would pay ~900 tokens for it.
JOINT_STYLE: PromptStyle = "plain"


class Seq2SeqEngine(Engine):
    """A resident encoder-decoder model, in joint or FiD mode."""

    family = "seq2seq"

    def __init__(self, loaded: LoadedModel, name: str, *, fid: bool, options: EngineOptions):
        self.name, self.model, self.fid, self.options = name, loaded.model, fid, options
        self.device, self.torch_device = str(loaded.device), loaded.device
        self.attention_backend = loaded.attention_backend
        self.codec = Codec(loaded.tokenizer)
        config = self.model.config
        self.max_context_tokens = int(getattr(config, "n_positions", 0) or 4096)
        self.kv_bytes = kv_bytes_per_token(config, self.model.dtype)
        self.eos = int(config.eos_token_id)
        self.pad = int(config.pad_token_id)
        self.start = int(config.decoder_start_token_id)
        self.newline_ids = newline_ids(loaded.tokenizer)
        self.kernel: Kernel = (
            T5Kernel(self.model) if T5Kernel.supports(self.model) else GenericKernel(self.model)
        )
        self._warm_up()

    def open_session(
        self,
        question: str,
        documents: list[Document],
        *,
        masking: Masking = "remove",
        max_new_tokens: int = 16,
        fast: bool | None = None,
    ) -> Seq2SeqSession:
        if fast:
            raise FastModeUnsupported(
                f"fast mode is for decoder-only models; {self.name} is an encoder-decoder "
                "(its FiD mode already encodes each passage once)"
            )
        if self.fid:
            return FidSession(self, question, documents, max_new_tokens)
        return JointSession(self, question, documents, masking, max_new_tokens)

    def count_tokens(self, question: str, documents: list[Document]) -> int:
        if self.fid:
            return max(
                len(self.codec.encode(fid_passage(question, d)[0]).ids) + 1 for d in documents
            )
        layout = PromptLayout(self.codec, question, documents, "remove", self.pad, JOINT_STYLE)
        return len(layout.full()) + 1

    def _warm_up(self) -> None:
        docs = [Document("Warm-up passage.", "Warm-up")]
        units = segment.document_units(docs)
        self.open_session("Warm up?", docs, max_new_tokens=2).answers(units, np.ones((1, 1), bool))


# --- forward passes ---------------------------------------------------------------------


@dataclass
class Memory:
    """Encoder output as the decoder reads it, for a batch of rows: ``parts`` (for
    ``T5Kernel`` every decoder layer's cross-attention keys and values (B, H, S, d), for
    ``GenericKernel`` the encoder states), with B = 1 when every row shares them (FiD),
    and ``mask`` (rows, S), True where a row attends."""

    parts: list[torch.Tensor]
    mask: torch.Tensor

    @property
    def shared(self) -> bool:
        return self.parts[0].shape[0] == 1

    def rows(self, index: torch.Tensor) -> Memory:
        parts = self.parts if self.shared else [p[index] for p in self.parts]
        return Memory(parts, self.mask[index])


class Decoding(Protocol):
    """A batch being decoded: ``step`` feeds ``ids`` (B, q) at positions ``pos[r]`` ..
    ``pos[r] + q - 1`` of row r (earlier positions were fed by earlier steps) and returns
    the logits (B, q, V) in fp32 and the token positions computed; ``keep`` drops rows."""

    def step(self, ids: torch.Tensor, pos: list[int]) -> tuple[torch.Tensor, int]: ...

    def keep(self, rows: list[int]) -> None: ...


class Kernel(Protocol):
    def encode(self, ids: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """Encoder states (B, S, H) of ``ids`` (B, S); ``mask`` (B, S) bool or None."""
        ...

    def memory(self, states: torch.Tensor, mask: torch.Tensor) -> Memory: ...

    def decoding(self, memory: Memory, length: int) -> Decoding:
        """A decoder for ``memory``'s rows, positions 0 .. length - 1."""
        ...


class T5Kernel:
    """T5's forward pass by direct calls of its modules (layer norms, projections,
    feed-forward blocks, embeddings, LM head) and SDPA: the operations of Hugging Face's
    T5 forward with SDPA, in the same order, without what that forward redoes on every
    call: the relative position bias (here built from the distinct offsets, not by
    bucketing every query-key pair, and once per batch, not per layer), the attention
    masks (once per batch), the cross-attention keys and values (once per set of encoder
    states, not per decoder call) and the cache bookkeeping. The decoder's self-attention
    cache holds every row at its own position, so rows of one batch may be at different
    lengths."""

    def __init__(self, model: Any) -> None:
        self.model: Any = model
        self.encoder: Any = model.encoder
        self.decoder: Any = model.decoder
        first = self.encoder.block[0].layer[0].SelfAttention
        self.heads, self.head_dim = first.n_heads, first.key_value_proj_dim
        weight = model.lm_head.weight
        self.device, self.dtype = weight.device, weight.dtype
        self.min = torch.finfo(self.dtype).min
        config = model.config
        scale = getattr(config, "scale_decoder_outputs", config.tie_word_embeddings)
        self.out_scale = model.model_dim**-0.5 if scale else None
        self._decoder_bias: dict[int, torch.Tensor] = {}
        self._encoder_bias = torch.zeros((1, self.heads, 0, 0), dtype=self.dtype)

    @staticmethod
    def supports(model: Any) -> bool:
        """T5 with its first layer holding the relative bias, not fp16 (whose forward clamps
        activations) and not training (no dropout here)."""
        if not isinstance(model, T5ForConditionalGeneration) or model.training:
            return False
        if model.lm_head.weight.dtype == torch.float16:
            return False
        stacks: tuple[Any, Any] = (model.encoder, model.decoder)
        return all(
            block.layer[0].SelfAttention.has_relative_attention_bias == (i == 0)
            for stack in stacks
            for i, block in enumerate(stack.block)
        )

    def bias(self, attention: Any, query: int, key: int) -> torch.Tensor:
        """``attention.compute_bias(query, key)`` (1, H, query, key): the same buckets and
        embedding rows, bucketing the query + key - 1 distinct offsets only."""
        offsets = torch.arange(1 - query, key, device=self.device)  # key - query position
        buckets = attention._relative_position_bucket(
            offsets,
            bidirectional=not attention.is_decoder,
            num_buckets=attention.relative_attention_num_buckets,
            max_distance=attention.relative_attention_max_distance,
        )
        table = attention.relative_attention_bias(buckets).T.contiguous()  # (H, offsets)
        # bias[h, i, j] = table[h, j - i + query - 1]: windows of the reversed table
        bias: torch.Tensor = table.flip(1).unfold(1, key, 1).flip(2).contiguous()[None]
        return bias

    def encode(self, ids: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        width = ids.shape[1]
        bias = self.encoder_bias(width)
        if mask is not None and not bool(mask.all()):
            bias = torch.where(mask[:, None, None, :], bias, self.min)
        hidden = self.encoder.embed_tokens(ids)
        for block in self.encoder.block:
            layer = block.layer[0]
            attention = layer.SelfAttention
            normed = layer.layer_norm(hidden)
            q, k, v = (self._split(p(normed)) for p in (attention.q, attention.k, attention.v))
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=1.0)
            hidden = hidden + attention.o(_merge(out))
            hidden = block.layer[-1](hidden)
        states: torch.Tensor = self.encoder.final_layer_norm(hidden)
        return states

    def encoder_bias(self, width: int) -> torch.Tensor:
        """The encoder's bias (1, H, width, width). The bias depends on the offset j - i
        only, so one of the longest width seen (kept while it fits ``BIAS_BYTES``) serves
        every shorter input as its top-left block (a view: SDPA reads it in place)."""
        if self._encoder_bias.shape[-1] >= width:
            return self._encoder_bias[:, :, :width, :width]
        bias = self.bias(self.encoder.block[0].layer[0].SelfAttention, width, width)
        if bias.numel() * bias.element_size() <= BIAS_BYTES:
            self._encoder_bias = bias
        return bias

    def memory(self, states: torch.Tensor, mask: torch.Tensor) -> Memory:
        parts = []
        for block in self.decoder.block:
            attention = block.layer[1].EncDecAttention
            parts += [self._split(attention.k(states)), self._split(attention.v(states))]
        return Memory(parts, mask)

    def decoding(self, memory: Memory, length: int) -> T5Decoding:
        return T5Decoding(self, memory, length)

    def decoder_bias(self, length: int) -> torch.Tensor:
        """The decoder's self-attention bias (H, length, length), dtype min above the
        diagonal (what the causal mask makes of it)."""
        if length not in self._decoder_bias:
            bias = self.bias(self.decoder.block[0].layer[0].SelfAttention, length, length)[0]
            pos = torch.arange(length, device=self.device)
            causal = pos[:, None] >= pos[None, :]
            self._decoder_bias[length] = torch.where(causal, bias, self.min)
        return self._decoder_bias[length]

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        """(B, S, H*d) -> (B, H, S, d)."""
        return x.view(*x.shape[:2], self.heads, self.head_dim).transpose(1, 2)


def _merge(x: torch.Tensor) -> torch.Tensor:
    """(B, H, S, d) -> (B, S, H*d)."""
    return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], -1)


class T5Decoding:
    """One batch in ``T5Kernel``'s decoder: a self-attention cache (rows, length, H, d)
    per layer written at each row's own positions."""

    def __init__(self, kernel: T5Kernel, memory: Memory, length: int) -> None:
        self.k, self.memory = kernel, memory
        rows, layers = memory.mask.shape[0], len(kernel.decoder.block)
        shape = (rows, length, kernel.heads, kernel.head_dim)
        self.cache = [
            torch.zeros(shape, dtype=kernel.dtype, device=kernel.device) for _ in range(2 * layers)
        ]
        self.bias = kernel.decoder_bias(length)
        self.cross: torch.Tensor | None = None
        self._cross_rows: dict[int, torch.Tensor] = {}
        if not bool(memory.mask.all()):
            self.cross = torch.where(memory.mask, 0.0, kernel.min).to(kernel.dtype)

    def keep(self, rows: list[int]) -> None:
        index = torch.tensor(rows, dtype=torch.long, device=self.k.device)
        self.cache = [c[index] for c in self.cache]
        self.memory = self.memory.rows(index)
        if self.cross is not None:
            self.cross = self.cross[index]
        self._cross_rows.clear()

    def step(self, ids: torch.Tensor, pos: list[int]) -> tuple[torch.Tensor, int]:
        kernel, decoder = self.k, self.k.decoder
        rows, width = ids.shape
        if all(p == pos[0] for p in pos):
            end = pos[0] + width
            bias = self.bias[None, :, pos[0] : end, :end]
            where: tuple[Any, ...] = (slice(None), slice(pos[0], end))
        else:
            end = max(pos) + width
            qpos = torch.tensor(pos, device=kernel.device)[:, None]
            qpos = qpos + torch.arange(width, device=kernel.device)
            bias = self.bias[:, qpos, :end].transpose(0, 1)
            where = (torch.arange(rows, device=kernel.device)[:, None], qpos)
        hidden = decoder.embed_tokens(ids.to(kernel.device))
        for i, block in enumerate(decoder.block):
            layer = block.layer[0]
            attention = layer.SelfAttention
            normed = layer.layer_norm(hidden)
            shape = (rows, width, kernel.heads, kernel.head_dim)
            keys, values = self.cache[2 * i], self.cache[2 * i + 1]
            keys[where] = attention.k(normed).view(shape)
            values[where] = attention.v(normed).view(shape)
            out = F.scaled_dot_product_attention(
                kernel._split(attention.q(normed)),
                keys[:, :end].transpose(1, 2),
                values[:, :end].transpose(1, 2),
                attn_mask=bias,
                scale=1.0,
            )
            hidden = hidden + attention.o(_merge(out))
            hidden = self._cross_attention(block.layer[1], hidden, i)
            hidden = block.layer[-1](hidden)
        hidden = decoder.final_layer_norm(hidden)
        if kernel.out_scale is not None:
            hidden = hidden * kernel.out_scale
        return kernel.model.lm_head(hidden).float(), ids.numel()

    def _cross_attention(self, layer: Any, hidden: torch.Tensor, i: int) -> torch.Tensor:
        attention, kernel = layer.EncDecAttention, self.k
        rows, width = hidden.shape[:2]
        q = kernel._split(attention.q(layer.layer_norm(hidden)))
        keys, values = self.memory.parts[2 * i], self.memory.parts[2 * i + 1]
        if self.memory.shared and rows > 1:  # every row's queries against the one memory
            q = q.transpose(0, 1).reshape(1, kernel.heads, rows * width, kernel.head_dim)
            out = F.scaled_dot_product_attention(
                q, keys, values, attn_mask=self._shared_mask(width), scale=1.0
            )
            out = out.view(kernel.heads, rows, width, kernel.head_dim).transpose(0, 1)
        else:
            mask = None if self.cross is None else self.cross[:, None, None, :]
            out = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, scale=1.0)
        result: torch.Tensor = hidden + attention.o(_merge(out))
        return result

    def _shared_mask(self, width: int) -> torch.Tensor | None:
        if self.cross is None:
            return None
        if width not in self._cross_rows:
            self._cross_rows[width] = self.cross.repeat_interleave(width, 0)[None, None]
        return self._cross_rows[width]


class GenericKernel:
    """Any encoder-decoder model through its own forward; no decoder cache: every step runs
    the decoder over each row's whole prefix (slower, for models other than T5)."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.device = next(model.parameters()).device

    def encode(self, ids: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        mask = torch.ones_like(ids) if mask is None else mask.long()
        encoder = self.model.get_encoder()
        states: torch.Tensor = encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        return states

    def memory(self, states: torch.Tensor, mask: torch.Tensor) -> Memory:
        return Memory([states], mask)

    def decoding(self, memory: Memory, length: int) -> GenericDecoding:
        return GenericDecoding(self, memory, length)


class GenericDecoding:
    def __init__(self, kernel: GenericKernel, memory: Memory, length: int) -> None:
        self.k, self.memory = kernel, memory
        self.ids = torch.zeros((memory.mask.shape[0], length), dtype=torch.long)

    def keep(self, rows: list[int]) -> None:
        index = torch.tensor(rows, dtype=torch.long)
        self.ids, self.memory = self.ids[index], self.memory.rows(index.to(self.k.device))

    def step(self, ids: torch.Tensor, pos: list[int]) -> tuple[torch.Tensor, int]:
        rows, width = ids.shape
        qpos = torch.tensor(pos)[:, None] + torch.arange(width)
        index = torch.arange(rows)[:, None]
        self.ids[index, qpos] = ids
        end = max(pos) + width
        states = self.memory.parts[0].expand(rows, -1, -1)
        device = self.k.device
        out = self.k.model(
            encoder_outputs=BaseModelOutput(last_hidden_state=states),
            attention_mask=self.memory.mask.long(), decoder_input_ids=self.ids[:, :end].to(device),
            use_cache=False,
        )  # fmt: skip
        return out.logits.float()[index, qpos], rows * end


# --- sessions ---------------------------------------------------------------------------


class Seq2SeqSession(EngineSession):
    """Greedy decoding and teacher forcing over encoder states; subclasses say how a
    coalition becomes the decoder's memory."""

    def __init__(self, engine: Seq2SeqEngine, max_new_tokens: int) -> None:
        self.engine, self.max_new_tokens = engine, max_new_tokens
        self.stats = OracleStats(attention_backend=engine.attention_backend)
        self._memo: dict[Key, Answer] = {}
        self._answer_ids: dict[str, Answer] = {}
        self._counts: Counter[Answer] = Counter()
        newline = engine.newline_ids if engine.options.stop_at_newline else frozenset()
        eos = frozenset({engine.eos})
        self.stop = StopRule(engine.codec.tokenizer, eos, max_new_tokens, newline)
        self.lookup_proposed = 0
        self.lookup_accepted = 0
        self._lookup_tokens = engine.options.lookup_tokens

    @abstractmethod
    def key(self, units: Sequence[Unit], mask: np.ndarray) -> Key:
        """What identifies a coalition's input (equal keys give equal answers)."""

    @abstractmethod
    def memory(self, keys: list[Key]) -> Memory:
        """The decoder's memory for the coalitions ``keys``."""

    def answers(self, units: Sequence[Unit], masks: Masks) -> list[str]:
        return [self._text(a) for a in self.answer_tokens(units, masks)]

    def answer_tokens(self, units: Sequence[Unit], masks: Masks) -> list[Answer]:
        """The generated token ids per coalition, with the EOS or newline token that ended it."""
        keys = [self.key(units, row) for row in check_masks(units, masks)]
        # sorted by length so that a batch's rows pad little (joint mode: encoder inputs)
        todo = sorted(dict.fromkeys(k for k in keys if k not in self._memo), key=len)
        for batch in self._batches(todo):
            split_on_oom(self._decode_batch, batch)
        return [self._memo[k] for k in keys]

    def log_probs(
        self, units: Sequence[Unit], masks: Masks, answer: str
    ) -> npt.NDArray[np.float64]:
        keys = [self.key(units, row) for row in check_masks(units, masks)]
        target = self._answer_ids.get(answer) or (
            *self.engine.codec.encode(answer).ids,
            self.engine.eos,
        )
        out = np.zeros(len(keys), dtype=np.float64)
        for batch in self._batches(list(range(len(keys)))):
            scored = split_on_oom(lambda b: self._score(b, keys, target), batch)
            out[batch] = scored
        return out

    def _batches(self, items: list[Any]) -> list[list[Any]]:
        size = self.engine.options.max_batch
        width = max(1, self._width())
        budget = self.engine.options.batch_tokens or token_budget(self.engine, width)
        rows = max(1, min(size, budget // width))
        return [items[i : i + rows] for i in range(0, len(items), rows)]

    def _width(self) -> int:
        return 512

    def _score(self, batch: list[int], keys: list[Key], target: Answer) -> list[float]:
        memory = self.memory([keys[i] for i in batch])
        decoding = self.engine.kernel.decoding(memory, len(target))
        forced = torch.tensor([(self.engine.start, *target[:-1])] * len(batch))
        logits = self._run(decoding, forced, [0] * len(batch))
        chosen = torch.log_softmax(logits, -1)[:, torch.arange(len(target)), torch.tensor(target)]
        return chosen.double().sum(-1).tolist()

    def _decode_batch(self, keys: list[Key]) -> list[None]:
        memory = self.memory(keys)
        self.stats.batch_sizes.append(len(keys))
        for key, out in zip(keys, self._generate(memory, keys), strict=True):
            self._remember(key, tuple(out))
        return []

    def _generate(self, memory: Memory, keys: list[Key]) -> list[list[int]]:
        """Greedy answers for the rows of ``memory``. Each decoder call feeds every
        unfinished row its last token (the start token at first) and a draft: the
        continuation of the row's answer so far in the job's answer tree, or where there is
        none a look-up draft (``lookup.follow``); greedy tokens are appended while the fed
        ones equal them. Each row keeps its own position in the cache."""
        rows = memory.mask.shape[0]
        tree = self._draft_tree()
        decoding = self.engine.kernel.decoding(memory, 2 * self.max_new_tokens + 1)
        corpora: dict[int, np.ndarray] = {}
        answers = list(self._answer_ids.values())
        outputs: list[list[int]] = [[] for _ in range(rows)]
        active = list(range(rows))
        while active:
            drafts = []
            for r in active:
                out, room = outputs[r], self.max_new_tokens - len(outputs[r]) - 1
                guess: Sequence[int] = tree.get(tuple(out), ())[:room]
                lookup = not guess and bool(out) and self._lookup_tokens > 0
                if lookup:
                    if r not in corpora:
                        corpora[r] = corpus_of([self.prompt_tokens(keys[r]), *answers])
                    guess = follow(corpora[r], out, min(self._lookup_tokens, room))
                    self.lookup_proposed += len(guess)
                drafts.append((guess, lookup))
            width = 1 + max(len(g) for g, _ in drafts)
            fed = [
                [outputs[r][-1] if outputs[r] else self.engine.start, *g]
                + [self.engine.pad] * (width - 1 - len(g))
                for r, (g, _) in zip(active, drafts, strict=True)
            ]
            logits = self._run(decoding, torch.tensor(fed), [len(outputs[r]) for r in active])
            for r, (g, lookup), greedy in zip(
                active, drafts, logits.argmax(-1).tolist(), strict=True
            ):
                taken = self._accept(outputs[r], g, greedy)
                if lookup:
                    self.lookup_accepted += taken
                    self._adapt_lookup(len(g), taken)
                else:
                    self.stats.draft_tokens_proposed += min(len(g), taken + 1)
                    self.stats.draft_tokens_accepted += taken
            keep = [i for i, r in enumerate(active) if not self._done(outputs[r])]
            if len(keep) < len(active) and keep:
                decoding.keep(keep)
            active = [active[i] for i in keep]
        return outputs

    def _adapt_lookup(self, proposed: int, taken: int) -> None:
        """Look-up draft length, as Hugging Face's assisted generation schedules it: two
        more after a draft accepted in full, one fewer after a rejection; at 0 the session
        stops drafting by look-up. Every drafted position costs cross-attention over the
        whole memory, and the batch is padded to its longest draft."""
        if proposed and taken == proposed:
            self._lookup_tokens = min(self._lookup_tokens + 2, self.engine.options.lookup_tokens)
        elif proposed:
            self._lookup_tokens -= 1

    def _accept(self, out: list[int], draft: Sequence[int], greedy: list[int]) -> int:
        """Append greedy tokens while they confirm the draft; returns how many draft tokens
        were accepted."""
        taken = 0
        while True:
            token = greedy[taken]
            out.append(token)
            if self._done(out) or taken >= len(draft) or token != draft[taken]:
                return taken
            taken += 1

    def _draft_tree(self) -> dict[Answer, Answer]:
        """The job's answer tree: every prefix of its answers -> the continuation of the
        most frequent answer with that prefix (answers most frequent first while the tree
        has fewer than ``draft_nodes`` nodes)."""
        if not self.engine.options.speculative:
            return {}
        tree: dict[Answer, Answer] = {}
        for answer, _ in self._counts.most_common():
            if len(tree) >= self.engine.options.draft_nodes:
                break
            for i in range(len(answer)):
                tree.setdefault(answer[:i], answer[i:])
        return tree

    @abstractmethod
    def prompt_tokens(self, key: Key) -> Sequence[int]:
        """The token ids the coalition ``key`` shows the model (for look-up drafts)."""

    def _run(self, decoding: Decoding, ids: torch.Tensor, pos: list[int]) -> torch.Tensor:
        logits, computed = decoding.step(ids, pos)
        self.stats.forward_passes += ids.shape[0]
        self.stats.tokens_computed += computed
        return logits

    def _done(self, output: list[int]) -> bool:
        return self.stop.done(output)

    def _remember(self, key: Key, answer: Answer) -> None:
        self._memo[key] = answer
        self._answer_ids.setdefault(self._text(answer), answer)
        self._counts[answer] += 1

    def _text(self, answer: Answer) -> str:
        return self.stop.text(answer)


class JointSession(Seq2SeqSession):
    """Joint mode: the coalition's whole masked prompt goes through the encoder."""

    def __init__(
        self,
        engine: Seq2SeqEngine,
        question: str,
        docs: list[Document],
        masking: Masking,
        max_new_tokens: int,
    ):
        super().__init__(engine, max_new_tokens)
        self.layout = PromptLayout(engine.codec, question, docs, masking, engine.pad, JOINT_STYLE)
        self.full = (*self.layout.full(), engine.eos)
        if len(self.full) > engine.max_context_tokens:
            raise ContextTooLong(len(self.full), engine.max_context_tokens)

    def key(self, units: Sequence[Unit], mask: np.ndarray) -> Key:
        return (*self.layout.ids(units, mask), self.engine.eos)

    def prompt_ids(self, units: Sequence[Unit], mask: np.ndarray) -> Key:
        """Encoder input ids of the coalition (pad ids mark removed tokens under pad masking)."""
        return self.key(units, mask)

    def _width(self) -> int:
        return len(self.full)

    def prompt_tokens(self, key: Key) -> Sequence[int]:
        return [t for t in key if t != self.engine.pad]

    def memory(self, keys: list[Key]) -> Memory:
        width = max(len(k) for k in keys)
        ids = torch.full((len(keys), width), self.engine.pad, dtype=torch.long)
        for r, k in enumerate(keys):
            ids[r, : len(k)] = torch.tensor(k)
        mask = (ids != self.engine.pad).to(self.engine.torch_device)
        kernel = self.engine.kernel
        states = kernel.encode(ids.to(self.engine.torch_device), mask)
        self.stats.tokens_computed += ids.numel()
        return kernel.memory(states, mask)


class FidSession(Seq2SeqSession):
    """FiD mode: passages encoded once; a coalition is a cross-attention mask over them."""

    def __init__(
        self, engine: Seq2SeqEngine, question: str, docs: list[Document], max_new_tokens: int
    ):
        super().__init__(engine, max_new_tokens)
        self.docs = docs
        passages = [fid_passage(question, d) for d in docs] + [fid_passage(question, Document(""))]
        self.encoded = [engine.codec.encode(text) for text, _ in passages]
        self.offsets = [offset for _, offset in passages]
        longest = max(len(e.ids) + 1 for e in self.encoded)
        if longest > engine.max_context_tokens:
            raise ContextTooLong(longest, engine.max_context_tokens)
        self.states, self.slots = single_coalition(self._encode_passages)
        self.slot_ids = np.array([t for e in self.encoded for t in (*e.ids, engine.eos)])
        self.shared = engine.kernel.memory(self.states, torch.ones(1, 1, dtype=torch.bool))
        self._keep_cache: dict[tuple[int, tuple[tuple[int, int], ...]], tuple[int, ...]] = {}

    def _encode_passages(self) -> tuple[torch.Tensor, list[range]]:
        """Every passage through the encoder once, each on its own (no padding), then
        concatenated as FiD does."""
        parts, slots, start = [], [], 0
        for e in self.encoded:
            ids = torch.tensor([(*e.ids, self.engine.eos)], device=self.engine.torch_device)
            parts.append(self.engine.kernel.encode(ids, None)[0])
            slots.append(range(start, start + ids.shape[1]))
            start += ids.shape[1]
            self.stats.tokens_computed += ids.shape[1]
        self.stats.forward_passes += 1
        return torch.cat(parts)[None], slots

    def key(self, units: Sequence[Unit], mask: np.ndarray) -> Key:
        shown = segment.shown_documents(units, mask)
        spans = segment.removed_spans(units, mask, self.docs)
        keep: list[int] = []
        for i in shown:
            keep.extend(self._kept_slots(i, tuple(spans.get(i, ()))))
        return tuple(keep) if keep else tuple(self.slots[-1])

    def _kept_slots(self, i: int, spans: tuple[tuple[int, int], ...]) -> tuple[int, ...]:
        if (i, spans) not in self._keep_cache:
            if not spans:
                kept = tuple(self.slots[i])
            else:
                flags = self._token_keep(i, list(spans))
                kept = tuple(s for s, t in zip(self.slots[i], flags, strict=True) if t)
            self._keep_cache[(i, spans)] = kept
        return self._keep_cache[(i, spans)]

    def _token_keep(self, i: int, spans: list[tuple[int, int]]) -> list[bool]:
        encoded: Encoded = self.encoded[i]
        off = self.offsets[i]
        flags = [not any(a - off < e and s < b - off for s, e in spans) for a, b in encoded.spans]
        return [*flags, True]  # the passage's EOS

    def memory(self, keys: list[Key]) -> Memory:
        mask = torch.zeros((len(keys), self.states.shape[1]), dtype=torch.bool)
        for r, k in enumerate(keys):
            mask[r, torch.tensor(k)] = True
        return Memory(self.shared.parts, mask.to(self.engine.torch_device))

    def _width(self) -> int:
        return self.max_new_tokens + 1

    def prompt_tokens(self, key: Key) -> Sequence[int]:
        return self.slot_ids[np.asarray(key)].tolist()  # type: ignore[no-any-return]
