"""The parts a cut removes in every layer, attention heads and FFN neurons, behind one interface.

Both have one shape. Unit i of a layer is a slice of rows of the projections that produce it
(`q_proj` for a head, `gate_proj` and `up_proj` for a neuron) and the same slice of the columns
of the projection that consumes it (`o_proj`, `down_proj`). So one forward pre-hook on the
consumer reads or scales units (`Part.hooked`, `Part.masked`), pruning takes rows and columns
(`Part.prune`), and the pruned model's config records the original indices it keeps
(`kept_heads`, `kept_neurons`), from which `pruned_from_config` rebuilds its shapes.

What each unit is worth (`analyze` for heads, `neurons` for FFN neurons) and which go under a
layout (`select`) stay apart from this. The vocabulary is a cut too, but not per layer, and it
rebuilds the tokenizer: `vocab.trim_embeddings` records `config.kept_tokens` the same way.
"""

from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from ..errors import UserError


@dataclass(frozen=True)
class Selection:
    """What a cut keeps of one part: unit indices per layer (into the model's current units)."""

    keep: list[list[int]]
    sizes: list[int]  # units per layer before the cut
    layout: str
    cost: float | None = None  # what the selection gives up by its own measure, where it has one (heads)

    @property
    def drop(self) -> list[tuple[int, int]]:
        kept = [set(k) for k in self.keep]
        return [(layer, i) for layer, n in enumerate(self.sizes) for i in range(n) if i not in kept[layer]]

    @property
    def per_layer(self) -> list[int]:
        return [len(k) for k in self.keep]


class Part:
    """Units of a layer that one consumer projection reads side by side, `unit_size` columns each."""

    unit: str  # "attention head", "FFN neuron": what messages call one unit
    config_key: str  # where a pruned model's config records the original indices it keeps

    def modules(self, model) -> list[torch.nn.Module]:
        """The module of each layer that holds the part (attention, MLP)."""
        raise NotImplementedError

    def consumer(self, module) -> torch.nn.Linear:
        raise NotImplementedError

    def unit_size(self, module) -> int:
        raise NotImplementedError

    def _slice(self, module, keep: list[int], layer: int) -> None:
        """Keep these units (sorted) of one layer's module: rows of the producers, columns of the consumer."""
        raise NotImplementedError

    def sizes(self, model) -> list[int]:
        """Units per layer, read from the actual weight shapes (pruned models differ per layer)."""
        return [self.consumer(m).in_features // self.unit_size(m) for m in self.modules(model)]

    def hooked(self, model, fn: Callable[[int, torch.Tensor], torch.Tensor | None]):
        """Call fn(layer, x) with the consumer's input shaped [..., units, unit_size] before it runs;
        a returned tensor replaces the input."""
        modules = self.modules(model)

        def on_input(layer: int, x: torch.Tensor) -> torch.Tensor | None:
            out = fn(layer, x.view(*x.shape[:-1], -1, self.unit_size(modules[layer])))
            return None if out is None else out.reshape(x.shape)

        return input_hooks([self.consumer(m) for m in modules], on_input)

    @contextmanager
    def masked(self, model, mask: Sequence[torch.Tensor | None]):
        """Scale each unit's output by mask[layer][unit] (0 removes it; a requires-grad mask
        differentiates); a layer whose mask is None runs as it is."""

        def scale(layer: int, x: torch.Tensor) -> torch.Tensor | None:
            return None if mask[layer] is None else x * mask[layer].to(x.dtype)[:, None]

        with self.hooked(model, scale):
            yield

    def prune(self, model, keep: Sequence[Sequence[int]]):
        """Keep, in each layer, the units listed (indices into the model's current units). In place;
        the config records the original indices kept."""
        sizes = self.sizes(model)
        if len(keep) != len(sizes):
            raise ValueError(f"keep lists {len(keep)} layers, the model has {len(sizes)}")
        if not any(keep):
            raise UserError(f"this would remove every {self.unit} of the model")
        for layer, kept in enumerate(keep):
            if not kept:
                raise UserError(f"layer {layer} would keep no {self.unit}; keep at least one per layer")
            if any(not 0 <= i < sizes[layer] for i in kept) or len(set(kept)) != len(kept):
                raise ValueError(f"layer {layer}: {self.unit.split()[-1]} indices out of range or repeated in "
                                 f"{list(kept)}")
        for layer, (module, kept) in enumerate(zip(self.modules(model), keep)):
            self._slice(module, sorted(kept), layer)
        previous = getattr(model.config, self.config_key, None) or [list(range(n)) for n in sizes]
        setattr(model.config, self.config_key,
                [[previous[layer][i] for i in sorted(k)] for layer, k in enumerate(keep)])
        return model


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


def mask_from_keep(sizes: Sequence[int], keep: Sequence[Sequence[int]]) -> list[torch.Tensor]:
    """A 0/1 mask per layer that keeps the units listed."""
    mask = [torch.zeros(n) for n in sizes]
    for m, kept in zip(mask, keep):
        m[list(kept)] = 1.0
    return mask


def mask_from_drop(sizes: Sequence[int], drop: Sequence[tuple[int, int]]) -> list[torch.Tensor]:
    """A 0/1 mask per layer with the (layer, unit) pairs in `drop` set to 0."""
    mask = [torch.ones(n) for n in sizes]
    for layer, i in drop:
        mask[layer][i] = 0.0
    return mask


def _rows(linear: torch.nn.Linear, index: torch.Tensor) -> None:
    linear.weight = torch.nn.Parameter(linear.weight.data[index].clone())
    if linear.bias is not None:
        linear.bias = torch.nn.Parameter(linear.bias.data[index].clone())
    linear.out_features = len(index)


def _columns(linear: torch.nn.Linear, index: torch.Tensor) -> None:
    linear.weight = torch.nn.Parameter(linear.weight.data[:, index].clone())
    linear.in_features = len(index)


def unit_index(units: Sequence[int], size: int) -> torch.Tensor:
    """The positions of these units in a projection whose units lie side by side, `size` each."""
    return torch.tensor([u * size + i for u in units for i in range(size)], dtype=torch.long)


class Heads(Part):
    """Query heads: rows of q_proj, columns of o_proj. A KV head (rows of k_proj and v_proj) goes
    when every query head of its group goes, and every kept group of a layer keeps the same number
    of query heads, so the head-to-KV mapping (query head i reads KV head i // group size) holds."""

    unit, config_key = "attention head", "kept_heads"

    def modules(self, model):
        return [layer.self_attn for layer in model.model.layers]

    def consumer(self, module):
        return module.o_proj

    def unit_size(self, module):
        return module.head_dim

    def _slice(self, attn, keep, layer):
        n_heads, n_kv = attn.q_proj.out_features // attn.head_dim, attn.k_proj.out_features // attn.head_dim
        kv_keep = kv_heads_kept(keep, n_heads, n_kv, layer)
        q_index = unit_index(keep, attn.head_dim)
        _rows(attn.q_proj, q_index)
        _columns(attn.o_proj, q_index)
        kv_index = unit_index(kv_keep, attn.head_dim)
        _rows(attn.k_proj, kv_index)
        _rows(attn.v_proj, kv_index)
        attn.num_key_value_groups = len(keep) // len(kv_keep)


def kv_heads_kept(keep: Sequence[int], n_heads: int, n_kv: int, layer: int = 0) -> list[int]:
    """The KV heads a layer keeps, checking that each kept group keeps the same number of heads."""
    group = n_heads // n_kv
    per_group = {}
    for h in keep:
        per_group[h // group] = per_group.get(h // group, 0) + 1
    if len(set(per_group.values())) > 1:
        raise UserError(
            f"layer {layer}: KV groups keep different numbers of query heads {per_group}; "
            "with grouped-query attention every kept group must keep the same number"
        )
    return sorted(per_group)


class Neurons(Part):
    """FFN neurons of an MLP down_proj(act(gate_proj(x)) * up_proj(x)): neuron j is row j of gate_proj
    and up_proj and column j of down_proj."""

    unit, config_key = "FFN neuron", "kept_neurons"

    def modules(self, model):
        return [layer.mlp for layer in model.model.layers]

    def consumer(self, module):
        return module.down_proj

    def unit_size(self, module):
        return 1

    def _slice(self, mlp, keep, layer):
        index = torch.tensor(keep, dtype=torch.long)
        _rows(mlp.gate_proj, index)
        _rows(mlp.up_proj, index)
        _columns(mlp.down_proj, index)
        mlp.intermediate_size = len(index)


HEADS, NEURONS = Heads(), Neurons()
PARTS = (HEADS, NEURONS)


def pruned_from_config(config):
    """A model (float32, untrained weights) with the shapes of the pruned model whose config this is,
    rebuilt from the kept indices each part recorded; its vocabulary is already the config's size."""
    from transformers import AutoModelForCausalLM

    kept = {part: getattr(config, part.config_key, None) for part in PARTS}
    for part in PARTS:
        setattr(config, part.config_key, None)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    for part, keep in kept.items():
        if keep:
            part.prune(model, keep)
    return model
