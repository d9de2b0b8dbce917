"""Attention heads beyond the cut interface (`cuts.HEADS`): KV head counts, head size, and a mask
on one layer's heads alone (the masking analysis runs one layer at a time).
"""

import torch

from .parts import HEADS


def head_dim(model) -> int:
    return HEADS.modules(model)[0].head_dim


def kv_head_counts(model) -> list[int]:
    return [attn.k_proj.out_features // attn.head_dim for attn in HEADS.modules(model)]


def mask_hook(mask: torch.Tensor, dim: int):
    """A forward pre-hook for one o_proj that scales its heads by `mask` (for one layer alone)."""

    def hook(_module, args):
        x = args[0]
        return ((x.view(*x.shape[:-1], -1, dim) * mask.to(x.dtype)[:, None]).reshape(x.shape), *args[1:])

    return hook
