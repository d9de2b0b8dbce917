"""One hook mechanism for every part a cut addresses: the input of a module, read or replaced.

A head's output is its slice of the input to `o_proj`, an FFN neuron's activation is its entry of
the input to `down_proj`; `input_hooks` hands that input to a function before the module runs.
"""

from collections.abc import Callable, Sequence
from contextlib import contextmanager

import torch


@contextmanager
def input_hooks(modules: Sequence[torch.nn.Module], fn: Callable[[int, torch.Tensor], torch.Tensor | None]):
    """Call fn(i, x) with the first input x of modules[i] before it runs; a returned tensor replaces x."""

    def make_hook(i: int):
        def hook(_module, args):
            out = fn(i, args[0])
            return None if out is None else (out, *args[1:])

        return hook

    handles = [module.register_forward_pre_hook(make_hook(i)) for i, module in enumerate(modules)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
