"""Weights at rest in 16 bits, computed in float32: a model costs half its float32 bytes (a 1.5B's float32 weights
alone are 6.2 GB).

`rest(model, dtype)` stores every matrix (each Linear's and Embedding's weight) in `dtype`, float16 or bfloat16;
norms and biases stay float32. A Linear then multiplies with its weight upcast for that call only (one matrix's
float32 copy at a time, never the model's), and keeps the 16-bit weight, not the copy, for a backward pass; an
Embedding upcasts only the rows it looks up. So the model computes what the float32 model of the rounded weights
computes, on every CPU (bfloat16 arithmetic is 200x slower where AVX2 emulates it; none is done here). A module whose
weight is float32 (a tiny test model, or inside `as_float32`) runs its own forward unchanged.

Which 16 bits (`rest_dtype`): float16 for a GGUF or a float32/float16 checkpoint, the rounding the F16 GGUF export
applies anyway; bfloat16 for a bfloat16 checkpoint, exactly as published.
"""

from contextlib import contextmanager
from functools import cache

import torch
import torch.nn.functional as F

RESTING = (torch.float16, torch.bfloat16)


def rest_dtype(checkpoint_dtype: str | None) -> torch.dtype:
    """The 16-bit type for weights published as `checkpoint_dtype` (config.json's name for it; None: unknown)."""
    return torch.bfloat16 if checkpoint_dtype == "bfloat16" else torch.float16


def rest(model, dtype: torch.dtype):
    """In place: `model`'s matrices in `dtype`, its vectors in float32, its Linear and Embedding modules computing in
    float32 (`RestingLinear`, `resting_embedding`). Returns the model."""
    if dtype not in RESTING:
        raise ValueError(f"weights rest in one of {RESTING}, not {dtype}")
    for module in model.modules():
        if type(module) is torch.nn.Linear:
            module.__class__ = RestingLinear
        elif isinstance(module, torch.nn.Embedding) and not isinstance(module, _RestingEmbedding):
            module.__class__ = resting_embedding(type(module))
    for parameter in model.parameters():
        if parameter.is_floating_point():
            parameter.data = parameter.data.to(dtype if parameter.ndim >= 2 else torch.float32)
    return model


@contextmanager
def as_float32(parameters):
    """The 16-bit ones of `parameters` in float32 for the block (HEAL trains in float32), then back in place: exact
    unless the block changed them, since every 16-bit value is a float32 value. A parameter two models share (a cut
    model and its original) changes for both, for the block."""
    resting = [(p, p.dtype) for p in parameters if p.dtype in RESTING]
    for parameter, _ in resting:
        parameter.data = parameter.data.float()
    try:
        yield
    finally:
        for parameter, dtype in resting:
            parameter.data = parameter.data.to(dtype)


class _UpcastLinear(torch.autograd.Function):
    """y = x W^T + b with W upcast inside; the backward pass (gradients to the input only: a resting weight is
    never trained) upcasts W again rather than keeping the float32 copy alive until then."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(weight)
        return F.linear(x, weight.float(), bias)

    @staticmethod
    def backward(ctx, grad):
        (weight,) = ctx.saved_tensors
        return grad @ weight.float(), None, None


class RestingLinear(torch.nn.Linear):
    def forward(self, x):
        if self.weight.dtype not in RESTING:
            return super().forward(x)
        return _UpcastLinear.apply(x, self.weight, self.bias)


class _RestingEmbedding:
    """Looks up the rows it needs in float32: the module's own forward (a subclass may scale, as Gemma's does) runs
    on a float32 table of just those rows."""

    def forward(self, ids):
        stored = self._parameters["weight"]
        if stored.dtype not in RESTING:
            return super().forward(ids)
        rows, index = torch.unique(ids, return_inverse=True)
        padding, self.padding_idx = self.padding_idx, None  # an index into the full table; affects gradients only
        self._parameters["weight"] = torch.nn.Parameter(stored[rows].float(), requires_grad=False)
        try:
            return super().forward(index)
        finally:
            self._parameters["weight"], self.padding_idx = stored, padding


@cache
def resting_embedding(cls: type) -> type:
    """`cls` (nn.Embedding or a subclass) computing as `_RestingEmbedding` does."""
    return type(f"Resting{cls.__name__}", (_RestingEmbedding, cls), {})
