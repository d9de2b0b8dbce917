"""Attention heads beyond the cut interface (`parts.HEADS`): KV head counts, head size, each layer's shapes."""

from .parts import HEADS


def head_dim(model) -> int:
    return HEADS.modules(model)[0].head_dim


def kv_head_counts(model) -> list[int]:
    return [attn.k_proj.out_features // attn.head_dim for attn in HEADS.modules(model)]


def layer_shapes(model) -> tuple[list[int], list[int], list[int]]:
    """Per layer: query heads, KV heads, FFN width, read from the actual weights."""
    ffn = [layer.mlp.up_proj.out_features for layer in model.model.layers]
    return HEADS.sizes(model), kv_head_counts(model), ffn
