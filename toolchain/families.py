"""The model families the toolchain supports, one config object each instead of branches."""

from dataclasses import dataclass

from .errors import UserError


@dataclass(frozen=True)
class Family:
    name: str
    model_types: tuple[str, ...]  # Hugging Face config.model_type values
    gguf_arch: str  # llama.cpp architecture for a model with one head count in every layer
    free_gguf_arch: str | None  # llama.cpp architecture taking per-layer counts, if any
    qk_norm: bool  # per-head RMSNorm on queries and keys (Qwen3, Gemma 3)
    qkv_bias: bool  # biases on q/k/v projections (Qwen2)


FAMILIES = {
    f.name: f
    for f in (
        Family("llama", ("llama",), "llama", "deci", qk_norm=False, qkv_bias=False),
        Family("qwen2", ("qwen2",), "qwen2", "deci", qk_norm=False, qkv_bias=True),
        Family("qwen3", ("qwen3",), "qwen3", None, qk_norm=True, qkv_bias=False),
        Family("gemma3", ("gemma3_text",), "gemma3", None, qk_norm=True, qkv_bias=False),
    )
}


def family_of(model_type: str) -> Family:
    for family in FAMILIES.values():
        if model_type in family.model_types:
            return family
    supported = ", ".join(t for f in FAMILIES.values() for t in f.model_types)
    raise UserError(f"model type {model_type!r} is not supported (supported: {supported})")
