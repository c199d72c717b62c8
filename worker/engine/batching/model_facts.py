"""What the batch layouts and the memory budget read from a resident engine: typed, so
that a layout cannot quietly start depending on more of the engine than these facts."""

from __future__ import annotations

from typing import Any, Protocol

import torch

from worker.engine.attention.masks import MaskSpec
from worker.engine.base import EngineOptions


class MemoryFacts(Protocol):
    """Enough to size batches and the prefix store (both model families)."""

    @property
    def torch_device(self) -> torch.device: ...
    @property
    def kv_bytes(self) -> int: ...


class ModelFacts(MemoryFacts, Protocol):
    """What a causal batch layout needs to run the model's body over its rows."""

    @property
    def model(self) -> Any: ...  # the transformers model (its dtype)
    @property
    def base(self) -> Any: ...  # the model's body: embeddings and layers, no head
    @property
    def options(self) -> EngineOptions: ...
    @property
    def mask_spec(self) -> MaskSpec: ...
    @property
    def pad(self) -> int: ...
    @property
    def layers(self) -> int: ...
    @property
    def kv_heads(self) -> int: ...
    @property
    def head_dim(self) -> int: ...
    @property
    def key_cost(self) -> float: ...
    @property
    def slot_cost(self) -> float: ...
