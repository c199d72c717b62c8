"""Encoder-decoder engine (T5, Flan-T5, FiD): the resident model, in joint or FiD mode.

The modes (``modes``) say how a coalition becomes the decoder's memory; the session
(``session``) decodes greedily with speculation. For T5 the forward pass is ``T5Kernel``:
the model's own modules called directly; other encoder-decoder models use
``GenericKernel`` (plain ``model(...)`` calls without a decoder cache).
"""

from __future__ import annotations

from worker.engine.base import Engine, EngineOptions
from worker.engine.batching.budget import kv_bytes_per_token
from worker.engine.errors import FastModeUnsupported
from worker.engine.loading.models import LoadedModel
from worker.engine.prompt_layout import PromptLayout
from worker.engine.prompts import Codec, fid_passage
from worker.engine.seq2seq.kernel import GenericKernel, Kernel
from worker.engine.seq2seq.modes import JOINT_STYLE, FidSession, JointSession
from worker.engine.seq2seq.session import Seq2SeqSession
from worker.engine.seq2seq.t5_kernel import T5Kernel
from worker.engine.session import warm_up
from worker.engine.stopping import newline_ids
from worker.shapley.units import Document, Masking


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
        warm_up(self)
