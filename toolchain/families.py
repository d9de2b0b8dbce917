"""The model families the toolchain supports, one config object each instead of branches."""

from dataclasses import dataclass

from .errors import UserError


@dataclass(frozen=True)
class Family:
    name: str
    model_types: tuple[str, ...]  # Hugging Face config.model_type values
    gguf_arch: str  # llama.cpp architecture for a model with one head count in every layer
    free_gguf_arch: str | None  # llama.cpp architecture taking per-layer counts, if any


FAMILIES = {
    f.name: f
    for f in (
        Family("llama", ("llama",), "llama", "deci"),
        Family("qwen2", ("qwen2",), "qwen2", "deci"),
        Family("qwen3", ("qwen3",), "qwen3", None),
        Family("gemma3", ("gemma3_text",), "gemma3", None),
    )
}


def family_of(model_type: str) -> Family:
    for family in FAMILIES.values():
        if model_type in family.model_types:
            return family
    supported = ", ".join(t for f in FAMILIES.values() for t in f.model_types)
    raise UserError(f"model type {model_type!r} is not supported (supported: {supported})")
