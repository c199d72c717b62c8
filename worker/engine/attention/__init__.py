"""Attention kernels and masks: SDPA routing, tree masks, key blocks, bf16 and FlashAttention."""
