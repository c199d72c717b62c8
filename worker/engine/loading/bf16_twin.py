"""A bf16 copy of an fp32 CPU model, for fast mode only.

Fast mode already changes the model's computation (a coalition's tail attends to the
full-context cache with the removed documents masked out, a cache computed with them
present), and it is judged by how often its answers agree with the exact engine's. On a
CPU with bf16 matrix instructions the weights' products, most of a fast-mode coalition's
time, run about twice as fast in bf16, and bf16 is what the same model computes on a GPU
anyway. Measured on 10 NaturalQuestions documents and 128 coalitions, the copy (with
``attention.bf16``) made fast mode 1.47x (SmolLM2) and 1.39x (Gemma 3) faster, and its
answers agreed with the exact engine's as often as before (0.69 against 0.67, 0.62
against 0.64; docs/performance.md). The exact engine never uses the copy: its answers
must equal plain ``generate`` on the loaded model.

The copy shares nothing with the fp32 model (every parameter is converted, tied weights
stay tied); buffers (rotary frequencies, Gemma's embedding scale) stay as they were, as
the model's own code casts them where it uses them.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F

from worker.engine.loading.timing import best_seconds

# bf16 must be at least this much faster than fp32 on a product of the model's width to
# be worth an approximation on top of fast mode's (a CPU without bf16 instructions runs
# bf16 products several times slower than fp32 ones).
WORTH = 0.8
CALIBRATION_ROWS = 256  # about a fast-mode batch's rows of one pass, in a few calls


def applies(model: Any) -> bool:
    """Only an fp32 model on a CPU has a cheaper bf16 twin (CUDA models already are bf16)."""
    parameter = next(model.parameters())
    return bool(parameter.dtype == torch.float32 and parameter.device.type == "cpu")


def bf16_copy(model: Any) -> Any:
    """The model with every parameter in bf16, the original left untouched. Parameters are
    mapped once each through ``deepcopy``'s memo, so a tied head stays tied to its
    embedding and no fp32 copy of the weights is ever made."""
    memo: dict[int, Any] = {
        id(p): torch.nn.Parameter(p.detach().to(torch.bfloat16), requires_grad=False)
        for p in model.parameters()
    }
    twin = copy.deepcopy(model, memo)
    twin.eval()
    return twin


def bf16_pays(width: int, repeats: int = 3) -> bool:
    """Whether a product of the model's width (``width`` to ``4 * width``, an MLP's shape)
    runs at least ``1 / WORTH`` times faster in bf16 than in fp32 here; best of
    ``repeats`` timings each."""
    generator = torch.Generator().manual_seed(0)
    rows = torch.randn(CALIBRATION_ROWS, width, generator=generator)
    weight = torch.randn(4 * width, width, generator=generator)
    rows16, weight16 = rows.to(torch.bfloat16), weight.to(torch.bfloat16)

    with torch.no_grad():
        half = best_seconds(lambda: F.linear(rows16, weight16), repeats)
        return half < WORTH * best_seconds(lambda: F.linear(rows, weight), repeats)
