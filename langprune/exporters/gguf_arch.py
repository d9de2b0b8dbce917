"""Which llama.cpp architecture a model's GGUF is written as (`choose_arch`: the family's own graph, or `deci` for
per-layer shapes), and what `export_gguf` would refuse in a Hugging Face directory, checked before any work
(`check_hf_source`)."""

from pathlib import Path

from ..errors import UserError
from ..model.families import GGUF_ARCHS, Family


def choose_arch(
    family: Family, heads: list[int], kv: list[int], ffn: list[int], full_width: bool = True, arch: str | None = None
) -> str:
    """The llama.cpp architecture for these per-layer shapes (or check the one asked for).

    full_width: whether query heads x head_dim equals the hidden size in every layer; llama.cpp's
    qwen2 graph needs that, so a Qwen2 model with pruned heads has no GGUF architecture here.
    """
    uniform = len(set(heads)) == len(set(kv)) == len(set(ffn)) == 1
    if arch is not None and arch not in family.gguf_archs:
        raise UserError(f"a {family.name} model exports to GGUF as {' or '.join(family.gguf_archs)}, not {arch!r}")
    own_fits = uniform and (full_width or not GGUF_ARCHS[family.gguf_arch].full_width_attention)
    chosen = arch or (family.gguf_arch if own_fits else family.free_gguf_arch)
    if chosen is None or (chosen == family.gguf_arch and not own_fits):
        shapes = f"per-layer query heads {heads}, KV heads {kv}, FFN widths {ffn}"
        if uniform:
            reason = (f"llama.cpp's {family.gguf_arch!r} graph needs all query heads (it sizes attention to the "
                      "hidden size)")
        else:
            reason = (f"llama.cpp's {family.gguf_arch!r} architecture takes one head count, KV head count and FFN "
                      "width for all layers; prune the same number of heads in every layer (which heads may differ)")
        alternative = f", or export as {family.free_gguf_arch!r}" if family.free_gguf_arch else ""
        raise UserError(f"this {family.name} model cannot be written as GGUF: it has {shapes}; {reason}{alternative}")
    return chosen


def check_hf_source(path: Path, family: Family) -> None:
    """Before any work: what `export_gguf` would refuse in a Hugging Face directory, read from its
    config and tokenizer.json alone (a GGUF source has its own tokenizer and its graph's settings)."""
    import json

    from ..model.hf_vocab import check_byte_level

    if family.check_gguf:
        from transformers import AutoConfig

        family.check_gguf(AutoConfig.from_pretrained(path, local_files_only=True))
    try:
        check_byte_level(json.loads((path / "tokenizer.json").read_text()))
    except (OSError, ValueError):
        raise UserError(f"{path} has no readable tokenizer.json: only fast (tokenizers-backed) Hugging Face "
                        "tokenizers can be written to GGUF") from None
    except UserError as err:
        raise UserError(f"{path}: {err}") from None
