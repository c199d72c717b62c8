"""The engine contract: one resident model, one session per job.

The worker and the CLI only ever see :class:`Engine` and :class:`EngineSession`; the causal
(Llama, Gemma) and seq2seq (T5 joint, FiD) implementations live behind it, so nothing
outside this package branches on the model family.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Self

import numpy as np
import numpy.typing as npt

from worker.engine.prompts import PromptStyle
from worker.shapley.oracle import Masks, OracleStats
from worker.shapley.units import Document, Masking, Unit


@dataclass(frozen=True)
class EngineOptions:
    """Optimisation switches (all on by default; the benchmark turns them on in turn),
    settled when an engine is made: pass them to the constructor (or ``load_engine``), or
    derive a tuned engine with :meth:`Engine.tuned`; a live engine's options never change.

    ``batch_tokens``: token positions per batched forward pass (0 = choose from memory);
    ``max_batch``: coalitions per batch (1 disables batching); ``prefix_cache``: reuse
    the full-context KV cache (causal) / the cached passage encodings (FiD);
    ``prefix_tree`` (decoder-only): coalitions of a batch share the KV of the leading
    tokens they have in common; ``speculative``: verify the job's answer tree as a draft;
    ``lookup_tokens`` (decoder-only): where greedy decoding leaves that tree, each step
    also verifies up to this many tokens that followed the last generated ones in the job's
    answers or the coalition's prompt (0 = off); ``fast`` (decoder-only,
    opt-in, approximate): a coalition is the full-context KV cache with the removed units'
    slots left out and the kept ones' keys moved to their positions in the coalition's own
    prompt (``attention.rope_shift``); only the question tail is recomputed.
    ``fast_recompute`` (0 to 1) also recomputes that share of the kept tokens after the first
    removed one, the last ones (``causal.planning.hybrid_split``; 1 is exact up to the
    documents' numbering). ``layout`` (decoder-only):
    how a batch sits in memory, ``"tree"`` (prefix trees under explicit masks, SDPA),
    ``"linear"`` (a row per coalition with one draft chain, the FlashAttention 2 kernel on
    CUDA) or ``"auto"`` (linear where FlashAttention 2 runs, tree elsewhere; fast mode is
    always tree). ``key_blocks`` (tree layout): attention runs in blocks of queries over
    only the keys they can see (``worker.engine.attention.key_blocks``) instead of one dense masked
    call per layer. ``screened_head`` (decoder-only, fp32 on a CPU): greedy tokens from a
    bf16 copy of the output head, each candidate within the bf16 error bound of the best
    recomputed in fp32 (``worker.engine.screened_head``; the same tokens): ``"auto"``
    where it measured faster at load, ``"on"``, ``"off"``. ``fast_bf16`` (fast mode, an
    fp32 model on a CPU): fast mode runs on a bf16 copy of the model
    (``worker.engine.loading.bf16_twin``; one more approximation, its agreement measured):
    ``"auto"`` where bf16 products measured faster, ``"on"``, ``"off"``. ``stop_at_newline``: an
    answer ends at the first newline after non-whitespace text (QA evaluation's
    ``stop=["\\n"]``); its text is what precedes the newline. Small models otherwise run
    on past the answer ("Paris.\\nQuestion: ..."), every different tail is a different
    answer to the Shapley game, and the scores fragment (``worker.engine.stopping``).
    ``prompt_style`` (decoder-only): ``"short"`` asks for the answer alone (instruct models
    by instruction, base models by three solved examples), ``"plain"`` is the
    lost-in-the-middle prompt of the earlier evaluation records (``worker.engine.prompts``).
    """

    batch_tokens: int = 0
    max_batch: int = 32
    prefix_cache: bool = True
    prefix_tree: bool = True
    speculative: bool = True
    draft_nodes: int = 64
    lookup_tokens: int = 6
    fast: bool = False
    fast_recompute: float = 0.0
    layout: str = "auto"
    key_blocks: bool = True
    screened_head: str = "auto"
    fast_bf16: str = "auto"
    stop_at_newline: bool = True
    prompt_style: PromptStyle = "short"

    def __post_init__(self) -> None:
        if not 0.0 <= self.fast_recompute <= 1.0:
            raise ValueError(
                f"fast_recompute is a share of the kept tokens, 0 to 1; got {self.fast_recompute}"
            )


class EngineSession(ABC):
    """A model bound to one question and one set of documents: an ``Oracle``.

    Answers are memoised per coalition prompt, so a coalition is never decoded twice.
    """

    stats: OracleStats

    @abstractmethod
    def answers(self, units: Sequence[Unit], masks: Masks) -> list[str]:
        """The greedy answer for every coalition (rows of ``masks``, True keeps a unit)."""

    @abstractmethod
    def log_probs(
        self, units: Sequence[Unit], masks: Masks, answer: str
    ) -> npt.NDArray[np.float64]:
        """log p(answer, then what ended it | coalition) under teacher forcing.

        The scored ids are those the session generated for that text when it did (so
        re-tokenisation never changes them), including the token that ended the answer:
        EOS, or the newline-bearing token of the newline stop (whose text may begin with
        the answer's last characters, as in ".\\n"); nothing extra when ``max_new_tokens``
        cut it. A text never generated is scored as the tokenizer's ids followed by EOS.
        """


class Engine(ABC):
    """A resident model. ``open_session`` is cheap; loading happened at construction."""

    name: str
    family: str
    device: str
    attention_backend: str
    max_context_tokens: int
    options: EngineOptions

    @abstractmethod
    def open_session(
        self,
        question: str,
        documents: list[Document],
        *,
        masking: Masking = "remove",
        max_new_tokens: int = 16,
        fast: bool | None = None,
    ) -> EngineSession:
        """Bind the model to a job. Raises ``ContextTooLong`` when the full prompt does not
        fit. ``fast``: this job in the approximate fast mode (None: ``options.fast``);
        ``FastModeUnsupported`` where the model has none."""

    @abstractmethod
    def count_tokens(self, question: str, documents: list[Document]) -> int:
        """Tokens of the full-context prompt (what the context-window limit applies to)."""

    def tuned(self, options: EngineOptions) -> Self:
        """This engine over the same resident model with other options: a new object, so
        that a benchmark or one evaluation run never changes the engine other callers
        hold. Load-time measurements (head screening, bf16 timing) are kept."""
        engine = copy.copy(self)
        engine.options = options
        return engine


def check_masks(units: Sequence[Unit], masks: Masks) -> npt.NDArray[np.bool_]:
    """Masks as a 2-D boolean array with one column per unit."""
    array = np.asarray(masks, dtype=bool)
    if array.ndim != 2 or array.shape[1] != len(units):
        raise ValueError(f"masks must have shape (m, {len(units)}), got {array.shape}")
    return array
