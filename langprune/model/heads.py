"""Attention heads beyond the cut interface (`parts.HEADS`): KV head counts and head size."""

from .parts import HEADS


def head_dim(model) -> int:
    return HEADS.modules(model)[0].head_dim


def kv_head_counts(model) -> list[int]:
    return [attn.k_proj.out_features // attn.head_dim for attn in HEADS.modules(model)]
