"""Physical pruning: a smaller model that does less work, not zeroed weights.

Dropping query head h of a layer removes rows h*d:(h+1)*d of q_proj (and its bias) and the same
columns of o_proj. A key/value head goes (rows of k_proj and v_proj) when every query head of its
group goes. Every kept group of a layer must keep the same number of query heads, so the
head-to-KV mapping (query head i reads KV head i // group size) stays right.

The pruned model records the original indices of the heads it keeps in `config.kept_heads`
(one list per layer), as FFN pruning (`neurons.prune_ffn`) records `config.kept_neurons` and
vocabulary trimming (`vocab.trim_embeddings`) `config.kept_tokens`; `save_pruned` / `load_pruned`
round-trip them without the original model.
"""

from collections.abc import Sequence
from pathlib import Path

import torch

from .errors import UserError
from .heads import attention_modules, head_counts, head_index, kv_head_counts


def keep_from_drop(counts: Sequence[int], drop: Sequence[tuple[int, int]]) -> list[list[int]]:
    dropped = set(map(tuple, drop))
    return [[h for h in range(n) if (layer, h) not in dropped] for layer, n in enumerate(counts)]


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


def _rows(linear: torch.nn.Linear, index: torch.Tensor) -> None:
    linear.weight = torch.nn.Parameter(linear.weight.data[index].clone())
    if linear.bias is not None:
        linear.bias = torch.nn.Parameter(linear.bias.data[index].clone())
    linear.out_features = len(index)


def _columns(linear: torch.nn.Linear, index: torch.Tensor) -> None:
    linear.weight = torch.nn.Parameter(linear.weight.data[:, index].clone())
    linear.in_features = len(index)


def _slice_attention(attn, keep: Sequence[int], n_heads: int, n_kv: int, layer: int) -> None:
    if not keep:
        raise UserError(f"layer {layer} would keep no attention head; keep at least one per layer")
    keep = sorted(keep)
    kv_keep = kv_heads_kept(keep, n_heads, n_kv, layer)
    dim = attn.head_dim
    q_index = head_index(keep, dim)
    _rows(attn.q_proj, q_index)
    _columns(attn.o_proj, q_index)
    kv_index = head_index(kv_keep, dim)
    _rows(attn.k_proj, kv_index)
    _rows(attn.v_proj, kv_index)
    attn.num_key_value_groups = len(keep) // len(kv_keep)


def prune_heads(model, keep: Sequence[Sequence[int]]):
    """Keep, in each layer, the heads listed (indices into the model's current heads). In place."""
    counts, kv_counts = head_counts(model), kv_head_counts(model)
    if len(keep) != len(counts):
        raise ValueError(f"keep lists {len(keep)} layers, the model has {len(counts)}")
    if not any(keep):
        raise UserError("this would remove every attention head of the model")
    for layer, (attn, kept) in enumerate(zip(attention_modules(model), keep)):
        if any(not 0 <= h < counts[layer] for h in kept):
            raise ValueError(f"layer {layer}: head index out of range in {list(kept)}")
        _slice_attention(attn, kept, counts[layer], kv_counts[layer], layer)
    previous = getattr(model.config, "kept_heads", None) or [list(range(n)) for n in counts]
    model.config.kept_heads = [[previous[layer][h] for h in sorted(k)] for layer, k in enumerate(keep)]
    return model


def save_pruned(model, tokenizer, folder: Path) -> None:
    """safetensors + config.json (with kept_heads) + tokenizer: reloadable by `load_pruned`."""
    folder = Path(folder)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def load_pruned(folder: Path):
    """A model saved by `save_pruned`, rebuilt with its per-layer shapes; the original is not needed."""
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder = Path(folder)
    config = AutoConfig.from_pretrained(folder, local_files_only=True)
    kept, neurons = getattr(config, "kept_heads", None), getattr(config, "kept_neurons", None)
    config.kept_heads = config.kept_neurons = None
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)  # the vocabulary is already its size
    if kept:
        prune_heads(model, kept)
    if neurons:
        from .neurons import prune_ffn

        prune_ffn(model, neurons)
    state = {}
    for file in sorted(folder.glob("*.safetensors")):
        state.update(load_file(file))
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if k not in _tied_keys(model)]
    if missing or result.unexpected_keys:
        raise UserError(f"{folder}: weights do not fit: missing {missing[:3]}, unexpected {result.unexpected_keys[:3]}")
    model.tie_weights()
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    return model.eval(), tokenizer


def _tied_keys(model) -> set[str]:
    return {"lm_head.weight"} if model.config.tie_word_embeddings else set()
