"""T5's forward pass for the seq2seq session, by direct calls of the model's own modules.

For ``T5ForConditionalGeneration`` (fp32/bf16): the same operations as its SDPA forward,
minus what the generic forward redoes on every call (position biases, the cross-attention
keys and values of an unchanged memory)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from transformers import T5ForConditionalGeneration

from worker.engine.seq2seq.kernel import EncoderMemory

BIAS_BYTES = 256 * 2**20  # T5Kernel keeps the encoder's position bias up to this size


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

    def memory(self, states: torch.Tensor, mask: torch.Tensor) -> EncoderMemory:
        parts = []
        for block in self.decoder.block:
            attention = block.layer[1].EncDecAttention
            parts += [self._split(attention.k(states)), self._split(attention.v(states))]
        return EncoderMemory(parts, mask)

    def decoding(self, memory: EncoderMemory, length: int) -> T5Decoding:
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

    def __init__(self, kernel: T5Kernel, memory: EncoderMemory, length: int) -> None:
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
