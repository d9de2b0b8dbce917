"""A pruned model as files, and back: save it, and rebuild it without the original model.

The cuts themselves are physical (`model.parts.Part.prune`: fewer rows and columns, not zeroed weights).
A pruned model's config records the original indices it keeps (`kept_heads`, `kept_neurons`, and
`kept_tokens` for a trimmed vocabulary), from which `load_pruned` rebuilds its shapes. Where every
layer keeps the same shapes the config is instead a standard one with the reduced counts, which any
tool built on transformers loads (`standard_config`).
"""

import json
from collections.abc import Sequence
from pathlib import Path

from ..errors import UserError
from ..model.heads import head_dim, layer_shapes
from ..model.parts import pruned_from_config


def keep_from_drop(counts: Sequence[int], drop: Sequence[tuple[int, int]]) -> list[list[int]]:
    dropped = set(map(tuple, drop))
    return [[h for h in range(n) if (layer, h) not in dropped] for layer, n in enumerate(counts)]


def save_pruned(model, tokenizer, folder: Path) -> None:
    """safetensors + config.json + tokenizer, reloadable by `load_pruned`; where every layer keeps the same
    shapes, a standard config that stock transformers loads (`standard_config`)."""
    folder = Path(folder)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    if standard := standard_config(model, config):
        (folder / "config.json").write_text(json.dumps(standard, indent=2, sort_keys=True) + "\n")


def standard_config(model, config: dict) -> dict | None:
    """config.json for a pruned model whose layers all keep the same query heads, KV heads and FFN width: those
    counts as the model's own (`num_attention_heads`, `num_key_value_heads`, `intermediate_size`, an explicit
    `head_dim`), so `AutoModelForCausalLM.from_pretrained` (no langprune) builds the pruned shapes; the kept indices
    stay, renamed, as a record. None where no head or neuron was cut (the config is standard already) and for
    per-layer shapes, which only `load_pruned` rebuilds."""
    kept = {key: config[key] for key in ("kept_heads", "kept_neurons") if config.get(key)}
    heads, kv, ffn = layer_shapes(model)
    if not kept or len(set(heads)) != 1 or len(set(kv)) != 1 or len(set(ffn)) != 1:
        return None
    standard = {key: value for key, value in config.items() if key not in ("kept_heads", "kept_neurons")}
    standard.update(num_attention_heads=heads[0], num_key_value_heads=kv[0], intermediate_size=ffn[0],
                    head_dim=head_dim(model), langprune=kept)
    return standard


def load_pruned(folder: Path):
    """A model saved by `save_pruned`, rebuilt with its per-layer shapes; the original is not needed."""
    from safetensors.torch import load_file
    from transformers import AutoConfig

    from ..model.load import load_tokenizer

    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise UserError(f"{folder} is not a model langprune saved (no config.json): give an export's folder or its "
                        "pytorch/ folder")
    model = pruned_from_config(AutoConfig.from_pretrained(folder, local_files_only=True))
    state = {}
    for file in sorted(folder.glob("*.safetensors")):
        state.update(load_file(file))
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if k not in _tied_keys(model)]
    if missing or result.unexpected_keys:
        raise UserError(f"{folder}: weights do not fit: missing {missing[:3]}, unexpected {result.unexpected_keys[:3]}")
    model.tie_weights()
    tokenizer = load_tokenizer(folder)
    return model.eval(), tokenizer


def _tied_keys(model) -> set[str]:
    return {"lm_head.weight"} if model.config.tie_word_embeddings else set()
