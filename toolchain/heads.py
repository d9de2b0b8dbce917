"""Attention heads made addressable: counts, per-head masks and per-head outputs.

A head's output is its slice of the input to the layer's output projection (`o_proj`), so a
forward pre-hook on `o_proj` can scale it (masking, or a differentiable mask for gradients) or
read it (activation statistics). Works for every supported family, whatever the attention kernel.
"""

from collections.abc import Callable, Sequence
from contextlib import contextmanager

import torch

from .hooks import input_hooks


def attention_modules(model) -> list[torch.nn.Module]:
    return [layer.self_attn for layer in model.model.layers]


def head_dim(model) -> int:
    return attention_modules(model)[0].head_dim


def head_counts(model) -> list[int]:
    """Query heads per layer, read from the actual weight shapes (pruned models differ per layer)."""
    return [attn.q_proj.out_features // attn.head_dim for attn in attention_modules(model)]


def kv_head_counts(model) -> list[int]:
    return [attn.k_proj.out_features // attn.head_dim for attn in attention_modules(model)]


def head_index(heads: Sequence[int], dim: int) -> torch.Tensor:
    """The positions of these heads in a projection whose heads lie side by side, `dim` each."""
    return torch.tensor([h * dim + i for h in heads for i in range(dim)], dtype=torch.long)


def hooked_heads(model, fn: Callable[[int, torch.Tensor], torch.Tensor | None]):
    """Call fn(layer, heads) with heads shaped [batch, seq, n_heads, head_dim] before each o_proj.

    If fn returns a tensor, it replaces the heads (e.g. masked); otherwise the forward is unchanged.
    """
    attns = attention_modules(model)

    def on_input(layer: int, x: torch.Tensor) -> torch.Tensor | None:
        out = fn(layer, x.view(*x.shape[:-1], -1, attns[layer].head_dim))
        return None if out is None else out.reshape(x.shape)

    return input_hooks([attn.o_proj for attn in attns], on_input)


@contextmanager
def masked_heads(model, mask: Sequence[torch.Tensor]):
    """Scale each head's output by mask[layer][head] (0 removes it; a requires-grad mask differentiates)."""

    def apply(layer: int, heads: torch.Tensor) -> torch.Tensor:
        return heads * mask[layer].to(heads.dtype)[:, None]

    with hooked_heads(model, apply):
        yield


def mask_hook(mask: torch.Tensor, dim: int):
    """A forward pre-hook for one o_proj that scales its heads by `mask` (for one layer alone)."""

    def hook(_module, args):
        x = args[0]
        return (_scale_heads(x, mask, dim), *args[1:])

    return hook


def _scale_heads(x: torch.Tensor, mask: torch.Tensor, dim: int) -> torch.Tensor:
    return (x.view(*x.shape[:-1], -1, dim) * mask.to(x.dtype)[:, None]).reshape(x.shape)


def mask_from_drop(counts: Sequence[int], drop: Sequence[tuple[int, int]]) -> list[torch.Tensor]:
    """A 0/1 mask with the (layer, head) pairs in `drop` set to 0."""
    mask = [torch.ones(n) for n in counts]
    for layer, head in drop:
        mask[layer][head] = 0.0
    return mask
