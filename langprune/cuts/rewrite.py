"""A pruned model as files, and back: save it, and rebuild it without the original model.

The cuts themselves are physical (`model.parts.Part.prune`: fewer rows and columns, not zeroed weights).
A pruned model's config records the original indices it keeps (`kept_heads`, `kept_neurons`, and
`kept_tokens` for a trimmed vocabulary), from which `load_pruned` rebuilds its shapes.
"""

from collections.abc import Sequence
from pathlib import Path

from ..errors import UserError
from ..model.parts import pruned_from_config


def keep_from_drop(counts: Sequence[int], drop: Sequence[tuple[int, int]]) -> list[list[int]]:
    dropped = set(map(tuple, drop))
    return [[h for h in range(n) if (layer, h) not in dropped] for layer, n in enumerate(counts)]


def save_pruned(model, tokenizer, folder: Path) -> None:
    """safetensors + config.json (with kept_heads) + tokenizer: reloadable by `load_pruned`."""
    folder = Path(folder)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def load_pruned(folder: Path):
    """A model saved by `save_pruned`, rebuilt with its per-layer shapes; the original is not needed."""
    from safetensors.torch import load_file
    from transformers import AutoConfig

    from ..model.load import load_tokenizer

    folder = Path(folder)
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
