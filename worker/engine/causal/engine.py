"""Decoder-only engine (Llama, Gemma, SmolLM): the resident model and what a session needs
to know about it: its attention kernel, output head, stop tokens and memory costs.

Sessions (``session.CausalSession``) give exact greedy answers with shared work. The vocabulary
projection runs only where a next token is needed, and an fp32 head on a CPU is screened in
bf16 with the candidates recomputed in fp32 (``screened_head``). ``EngineOptions.layout``
picks how a batch sits in memory: by default the linear layout where FlashAttention 2 is
available, the tree layout elsewhere.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import torch

from worker.engine.attention import sdpa as attention
from worker.engine.attention.flash import FLASH, pick_kernel
from worker.engine.attention.masks import MaskSpec
from worker.engine.base import Engine, EngineOptions
from worker.engine.batching.budget import attention_costs, head_read_rows, kv_bytes_per_token
from worker.engine.causal.session import CausalSession
from worker.engine.loading.bf16_twin import applies, bf16_copy, bf16_pays
from worker.engine.loading.models import LoadedModel
from worker.engine.prompt_layout import PromptLayout
from worker.engine.prompts import Codec
from worker.engine.screened_head import ScreenedHead, calibrate
from worker.engine.session import warm_up
from worker.engine.stopping import newline_ids
from worker.shapley.units import Document, Masking


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
        from worker.engine.causal.attention_mass import attention_mass

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
        fast = self.options.fast if fast is None else fast
        engine = self.bf16_twin() if fast and self.fast_in_bf16 else self  # the twin stays on self
        if fast != engine.options.fast:
            engine = engine.tuned(replace(engine.options, fast=fast))
        return engine

    def count_tokens(self, question: str, documents: list[Document]) -> int:
        style = self.options.prompt_style
        return len(PromptLayout(self.codec, question, documents, "remove", self.pad, style).full())

    @property
    def fast_in_bf16(self) -> bool:
        """Whether fast mode runs on the bf16 copy of an fp32 CPU model (``loading.bf16_twin``):
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
        warm_up(self)


def _usable_backend(loaded: LoadedModel) -> str:
    """Exact prefix reuse and tree verification need arbitrary masks: models run on the
    engine's attention function (``attention.sdpa``: SDPA under the tree layout's masks, the
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
