"""Greedy tokens from an fp32 output head without streaming its fp32 weights each time.

Greedy decoding needs only the argmax of each state's logits, and on a CPU the head
(Gemma 3's: 262k words x 640, 671 MB in fp32) is read from memory on every call. A bf16
copy of it is half the bytes and runs on the CPU's bf16 matrix units: its logits are
within a bound of the fp32 ones, so every word whose bf16 logit is within twice that
bound of the row's best can be the fp32 argmax, and only those candidates (a handful) are
recomputed in fp32. The token is the fp32 argmax over them, ties to the lowest id as
``torch.argmax`` breaks them: the same token the full fp32 head gives, up to the order of
floating-point sums (the near-tie class that batching has anyway).

The bound: rounding to bf16 changes each factor by at most ``u = 2**-8`` of itself, so a
product by at most ``(2u + u**2)`` of ``|h_i| |W_vi|``, and a logit by at most that of
``sum_i |h_i| |W_vi| <= ||h|| ||W_v||`` (Cauchy-Schwarz); fp32 accumulation (here and in
the reference) adds ``d * 2**-24`` of the same sum, and rounding the bf16 product's output
``u`` of the logit itself, which is at most about ``||h|| ||W_v||``. ``MARGIN_UNITS = 5``
covers the sum of those with room; the measured error on Gemma 3's head over a real
prompt was a fifth of the bound.

Soft-capped heads (Gemma 2) are not screened: a saturated ``tanh`` makes far-apart logits
equal, and then the lowest-id tie is not necessarily among the candidates.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from worker.engine.loading.timing import best_seconds

UNIT_ROUNDOFF = 2.0**-8  # bf16: 8 significant bits, round to nearest
MARGIN_UNITS = 5.0  # the bound on |bf16 logit - fp32 logit|, in u * ||h|| * max ||W_v||
CANDIDATE_CAP = 512  # a row with more candidates than this takes the full fp32 head
CHUNK_WORDS = 256  # words per chunk of the first search pass (a divisor of the vocabulary)
CALIBRATION_ROWS = 32  # a typical call's rows, when deciding whether screening pays
# The timing says nothing beyond twice the rows it ran (a busy machine inflates the one-row
# call: 400 rows per read measured beside a test run, 64 on a quiet machine for Gemma 3).
MAX_READ_ROWS = 2 * CALIBRATION_ROWS
ROWS_PER_CALL = 256  # rows per bf16 product, which bounds its logits' memory


class ScreenedHead:
    """``argmax(hidden @ weight.T)`` per row, screened in bf16, exact in fp32.

    The bf16 copy's rows are sorted by norm and cut into chunks, so that a chunk's bound
    (its largest row norm) is close to each of its rows' (SmolLM2's row norms run from 1.8
    to 7.5: one bound for all would make thousands of candidates, per chunk a handful)."""

    def __init__(self, weight: torch.Tensor) -> None:
        self.weight = weight.detach()
        norms = self.weight.norm(dim=-1)
        self.order = torch.argsort(norms)
        self.screen = self.weight.to(torch.bfloat16)[self.order]  # no fp32 copy on the way
        self.chunk = _chunk_size(self.weight.shape[0])
        self.chunk_norms = norms[self.order].view(-1, self.chunk).amax(dim=-1)
        self.candidates = 0  # fp32 recomputations so far (for tests and profiles)

    def argmax(self, hidden: torch.Tensor) -> torch.Tensor:
        """The greedy token id per row of ``hidden`` (``(n, d)``, fp32), ``ROWS_PER_CALL``
        rows at a time (Gemma's bf16 logits are 0.5 MB a row)."""
        hidden = hidden.detach().float()
        if hidden.shape[0] > ROWS_PER_CALL:
            parts = torch.split(hidden, ROWS_PER_CALL)
            return torch.cat([self.argmax(part) for part in parts])
        n, vocab = hidden.shape[0], self.weight.shape[0]
        approx = F.linear(hidden.to(torch.bfloat16), self.screen).view(n, -1, self.chunk)
        # One pass over the bf16 logits (each chunk's best), then only the chunks that can
        # hold a candidate are searched: a compare-and-nonzero pass over every logit costs
        # more than the product saves on a few hundred rows.
        chunk_best = approx.amax(dim=-1).float()
        margin = MARGIN_UNITS * UNIT_ROUNDOFF * hidden.norm(dim=-1)[:, None] * self.chunk_norms
        floor = (chunk_best - margin).amax(dim=-1, keepdim=True) - margin  # (n, chunks)
        # Rounded down to bf16 so that the comparison in bf16 never drops a candidate.
        floor = (floor - floor.abs() * 2 * UNIT_ROUNDOFF).to(torch.bfloat16)
        rows, chunks = torch.nonzero(chunk_best >= floor, as_tuple=True)
        inside = approx[rows, chunks] >= floor[rows, chunks][:, None]
        pairs, offsets = torch.nonzero(inside, as_tuple=True)
        rows, words = rows[pairs], self.order[chunks[pairs] * self.chunk + offsets]
        crowded = torch.bincount(rows, minlength=n) > CANDIDATE_CAP
        if crowded.any():
            rows, words = rows[~crowded[rows]], words[~crowded[rows]]
        self.candidates += int(words.numel())
        exact = (self.weight[words] * hidden[rows]).sum(dim=-1)
        best = torch.full((n,), -torch.inf).scatter_reduce(0, rows, exact, "amax")
        winners = torch.where(exact == best[rows], words, torch.full_like(words, vocab))
        tokens = torch.full((n,), vocab, dtype=words.dtype).scatter_reduce(0, rows, winners, "amin")
        # Crowded rows, and rows without a candidate (only a state holding NaN has none),
        # take the full head, whatever it makes of them.
        unsettled = tokens == vocab
        if unsettled.any():
            tokens[unsettled] = plain_argmax(self.weight, hidden[unsettled])
        return tokens


def plain_argmax(weight: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
    """The fp32 head's argmax, computed in full (what screening must reproduce)."""
    return F.linear(hidden, weight).argmax(dim=-1)


def calibrate(head: ScreenedHead, repeats: int = 2) -> int | None:
    """Rows of a screened call that cost as much as the call itself on one row (what
    ``CausalSession._greedy`` weighs states against reads with), or None when screening
    is slower than the fp32 head on this machine (a CPU without bf16 matrix instructions
    runs bf16 products slower than fp32 ones). Timed at load, best of ``repeats``."""
    width = head.weight.shape[1]
    generator = torch.Generator().manual_seed(0)
    one, many = (torch.randn(n, width, generator=generator) * 4 for n in (1, CALIBRATION_ROWS))

    with torch.no_grad():
        screened = best_seconds(lambda: head.argmax(many), repeats)
        if screened >= best_seconds(lambda: plain_argmax(head.weight, many), repeats):
            return None
        single = best_seconds(lambda: head.argmax(one), repeats)
    per_row = max(screened - single, 1e-9) / (CALIBRATION_ROWS - 1)
    return max(1, min(int(single / per_row), MAX_READ_ROWS))


def _chunk_size(vocab: int) -> int:
    """The divisor of ``vocab`` nearest ``CHUNK_WORDS`` from below (1 for a prime vocabulary:
    every word its own chunk, slower but the same tokens)."""
    return next(c for c in range(min(CHUNK_WORDS, vocab), 0, -1) if vocab % c == 0)
