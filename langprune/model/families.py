"""The model families langprune supports: one record each, holding every difference between them.

Load, export, recipes and the tests read these records and branch on nothing else; adding a
family is adding a record here (and its tiny random model in `tests/tiny.py`). The llama.cpp
architectures the GGUF export writes are a table too, as gguf-py keeps its own.
"""

from collections.abc import Callable
from dataclasses import dataclass

from ..errors import UserError

LAYOUTS = ("free", "uniform")


@dataclass(frozen=True)
class GGUFArch:
    """What the GGUF export must know of one llama.cpp architecture's graph."""

    name: str
    per_layer: bool  # head counts and FFN widths as per-layer arrays (else one value for all layers)
    interleaved_rope: bool  # rope over adjacent pairs: q/k rows reordered from transformers' halves
    full_width_attention: bool  # sizes the query projection to the hidden size: no pruned heads


GGUF_ARCHS = {
    a.name: a
    for a in (
        GGUFArch("llama", per_layer=False, interleaved_rope=True, full_width_attention=False),
        GGUFArch("deci", per_layer=True, interleaved_rope=True, full_width_attention=False),
        GGUFArch("qwen2", per_layer=False, interleaved_rope=False, full_width_attention=True),
        GGUFArch("qwen3", per_layer=False, interleaved_rope=False, full_width_attention=False),
        GGUFArch("gemma3", per_layer=False, interleaved_rope=False, full_width_attention=False),
    )
}

# llama.cpp's gemma3 graph hard-codes these (llama-model.cpp): every 6th layer is global, local
# layers use rope base 10000, and attention scales by 1/sqrt(head_dim).
GEMMA3_SWA_PATTERN = 6
GEMMA3_LOCAL_ROPE_BASE = 10000.0


def _check_gemma3(config) -> None:
    """Refuse Gemma 3 settings that llama.cpp's gemma3 graph does not read but hard-codes."""
    n = config.num_hidden_layers
    expected = ["full_attention" if (i + 1) % GEMMA3_SWA_PATTERN == 0 else "sliding_attention" for i in range(n)]
    problems = []
    if list(config.layer_types) != expected:
        problems.append(f"layer types {config.layer_types} (llama.cpp: every {GEMMA3_SWA_PATTERN}th layer global)")
    if float(config.rope_local_base_freq) != GEMMA3_LOCAL_ROPE_BASE:
        problems.append(f"local rope base {config.rope_local_base_freq} (llama.cpp: {GEMMA3_LOCAL_ROPE_BASE})")
    if config.query_pre_attn_scalar != config.head_dim:
        problems.append(f"query_pre_attn_scalar {config.query_pre_attn_scalar} (llama.cpp: head_dim {config.head_dim})")
    if getattr(config, "attn_logit_softcapping", None):
        problems.append("attention logit soft-capping")
    if problems:
        raise UserError("llama.cpp's gemma3 graph cannot run this model: " + "; ".join(problems))


def _gemma3_gguf_metadata(writer, config) -> None:
    """The Gemma 3 settings llama.cpp's gemma3 graph reads from the file."""
    writer.add_sliding_window(int(config.sliding_window))
    if getattr(config, "final_logit_softcapping", None):
        writer.add_final_logit_softcapping(float(config.final_logit_softcapping))


@dataclass(frozen=True)
class Family:
    name: str
    model_type: str  # Hugging Face config.model_type
    gguf_arch: str  # llama.cpp architecture with one head count for all layers; its GGUFs load as this family
    free_gguf_arch: str | None  # llama.cpp architecture with per-layer counts, if any
    norm_offset: float = 0.0  # llama.cpp's norm weight is transformers' plus this
    rope_scalings: tuple[str, ...] = ("linear",)  # rope scaling kinds the GGUF export writes
    check_gguf: Callable | None = None  # check_gguf(config): refuse settings the llama.cpp graph hard-codes
    gguf_metadata: Callable | None = None  # gguf_metadata(writer, config): keys only this family's graph reads

    @property
    def gguf_archs(self) -> tuple[str, ...]:
        return tuple(a for a in (self.gguf_arch, self.free_gguf_arch) if a)

    @property
    def layouts(self) -> tuple[str, ...]:
        """"uniform" (one count for all layers) always; "free" (per-layer counts) with a per-layer architecture."""
        return ("uniform", "free") if self.free_gguf_arch else ("uniform",)


FAMILIES = {
    f.name: f
    for f in (
        Family("llama", "llama", "llama", "deci", rope_scalings=("linear", "llama3")),
        Family("qwen2", "qwen2", "qwen2", "deci"),
        Family("qwen3", "qwen3", "qwen3", None),
        # transformers' Gemma RMSNorm scales by (1 + w), llama.cpp's by w
        Family("gemma3", "gemma3_text", "gemma3", None, norm_offset=1.0, check_gguf=_check_gemma3,
               gguf_metadata=_gemma3_gguf_metadata),
    )
}

# Hugging Face model types of a supported family's relatives that are refused, and why.
REFUSED_MODEL_TYPES = {"gemma3": "multimodal Gemma 3 is not supported; use a text-only checkpoint"}


def family_of(model_type: str) -> Family:
    """The family of a Hugging Face config.model_type."""
    for family in FAMILIES.values():
        if model_type == family.model_type:
            return family
    if model_type in REFUSED_MODEL_TYPES:
        raise UserError(REFUSED_MODEL_TYPES[model_type])
    supported = ", ".join(f.model_type for f in FAMILIES.values())
    raise UserError(f"model type {model_type!r} is not supported (supported: {supported})")


def family_of_gguf(arch: str) -> Family:
    """The family whose models a GGUF of llama.cpp architecture `arch` holds (as transformers loads it)."""
    for family in FAMILIES.values():
        if arch == family.gguf_arch:
            return family
    supported = ", ".join(f.gguf_arch for f in FAMILIES.values())
    raise UserError(f"GGUF architecture {arch!r} is not supported (supported: {supported})")
