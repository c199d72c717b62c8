"""What the seq2seq session asks of a forward pass: the encoder memory, a decoding batch,
and ``GenericKernel``, the plain ``model(...)`` calls (no decoder cache) for any
encoder-decoder model that is not T5 (``t5_kernel``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch
from transformers.modeling_outputs import BaseModelOutput


@dataclass
class EncoderMemory:
    """Encoder output as the decoder reads it, for a batch of rows: ``parts`` (for
    ``T5Kernel`` every decoder layer's cross-attention keys and values (B, H, S, d), for
    ``GenericKernel`` the encoder states), with B = 1 when every row shares them (FiD),
    and ``mask`` (rows, S), True where a row attends."""

    parts: list[torch.Tensor]
    mask: torch.Tensor

    @property
    def shared(self) -> bool:
        return self.parts[0].shape[0] == 1

    def rows(self, index: torch.Tensor) -> EncoderMemory:
        parts = self.parts if self.shared else [p[index] for p in self.parts]
        return EncoderMemory(parts, self.mask[index])


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

    def memory(self, states: torch.Tensor, mask: torch.Tensor) -> EncoderMemory: ...

    def decoding(self, memory: EncoderMemory, length: int) -> Decoding:
        """A decoder for ``memory``'s rows, positions 0 .. length - 1."""
        ...


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

    def memory(self, states: torch.Tensor, mask: torch.Tensor) -> EncoderMemory:
        return EncoderMemory([states], mask)

    def decoding(self, memory: EncoderMemory, length: int) -> GenericDecoding:
        return GenericDecoding(self, memory, length)


class GenericDecoding:
    def __init__(self, kernel: GenericKernel, memory: EncoderMemory, length: int) -> None:
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
