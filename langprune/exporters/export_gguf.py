"""GGUF export of (pruned) models for llama.cpp (`quantize.py` quantizes what it writes).

`export_gguf` writes the torch weights as F16 (1-D tensors, i.e. norms and biases, as F32) under
the llama.cpp architecture that can hold the model's shapes:

- `gemma3`, `llama`, `qwen2`, `qwen3`: one head count, KV head count and FFN width for all layers
  (which heads a layer kept may differ). A Gemma 3 model pruned to different counts per layer is
  refused: llama.cpp has no Gemma 3 graph with per-layer counts.
- `deci`: a Llama-family model with per-layer counts (arrays for `attention.head_count`,
  `attention.head_count_kv` and `feed_forward_length`; `attention.key_length` / `value_length`
  explicit, since llama.cpp would otherwise derive them from the first layer's head count).

Conventions follow llama.cpp's converter: tensor names from gguf-py's tensor map, metadata through
gguf-py's key constants and typed writer setters, q/k rows of the `llama` / `deci` architectures
reordered from the rotate-half layout of transformers to the interleaved pairs of llama.cpp's rope,
Gemma's norm weights stored as 1 + w. What differs by family or architecture comes from the records
in `families.py`.

Tokenizer metadata is written from a vocabulary (`tokenizer.GGUFVocab`): the source GGUF's (whose
other `tokenizer.*` keys are copied, with the `general.*` and architecture keys that still hold,
renamed for the target architecture) or, for a model loaded from a Hugging Face directory, the Hugging
Face tokenizer's (byte-level BPE only). A model whose vocabulary was trimmed (`vocab.trim_embeddings`,
`config.kept_tokens`) gets that vocabulary cut to its kept tokens, renumbered as its embedding rows.
"""

import functools
import math
from collections.abc import Callable, Iterator
from pathlib import Path

import gguf
import numpy as np
import torch
from gguf import GGUFValueType, Keys

from ..errors import UserError
from ..model.families import GGUF_ARCHS, Family, family_of
from ..model.gguf_file import read_header
from ..model.heads import layer_shapes
from ..model.hf_vocab import vocab_from_hf_tokenizer
from ..model.tokenizer import GGUFVocab, read_vocab
from ..paths import written
from .gguf_arch import choose_arch

# Keys describing the network's shape, always written from the model: a source GGUF's values are
# not copied for these (they may no longer hold), nor for its rope scaling. Templates over {arch}.
_SHAPE_KEYS = (
    Keys.LLM.CONTEXT_LENGTH, Keys.LLM.EMBEDDING_LENGTH, Keys.LLM.BLOCK_COUNT, Keys.LLM.FEED_FORWARD_LENGTH,
    Keys.LLM.VOCAB_SIZE, Keys.LLM.FINAL_LOGIT_SOFTCAPPING, Keys.Attention.HEAD_COUNT, Keys.Attention.HEAD_COUNT_KV,
    Keys.Attention.KEY_LENGTH, Keys.Attention.VALUE_LENGTH, Keys.Attention.LAYERNORM_RMS_EPS,
    Keys.Attention.SLIDING_WINDOW, Keys.Rope.FREQ_BASE, Keys.Rope.DIMENSION_COUNT,
    *(value for name, value in vars(Keys.Rope).items() if name.startswith("SCALING_")),
)
# general.* keys that describe the file rather than the model: never copied.
_FILE_KEYS = {Keys.General.ARCHITECTURE, Keys.General.FILE_TYPE, Keys.General.QUANTIZATION_VERSION,
              Keys.General.ALIGNMENT, Keys.General.SIZE_LABEL}
# Tokenizer keys written from the vocabulary itself (ids depend on which tokens are kept), never copied.
_VOCAB_IDS = {Keys.Tokenizer.BOS_ID: "bos_id", Keys.Tokenizer.EOS_ID: "eos_id", Keys.Tokenizer.UNK_ID: "unk_id",
              Keys.Tokenizer.PAD_ID: "pad_id"}
_VOCAB_KEYS = {Keys.Tokenizer.LIST, Keys.Tokenizer.TOKEN_TYPE, Keys.Tokenizer.SCORES, Keys.Tokenizer.MERGES,
               *_VOCAB_IDS}


def export_gguf(model, source_gguf: Path | None, tokenizer, out_path: Path, arch: str | None = None) -> Path:
    """Write `model` (pruned or not) as an F16 GGUF that llama.cpp loads; returns out_path.

    source_gguf: the GGUF the model came from, whose tokenizer and general metadata are copied
    (its vocabulary cut to `config.kept_tokens` for a trimmed model); None for a model from a
    Hugging Face directory, whose `tokenizer` is then written instead (the trimmed tokenizer of a
    trimmed model, or the original one, which is then cut the same way).
    arch: the llama.cpp architecture; by default the family's own when every layer has the same
    shapes, else its per-layer one (`deci` for Llama).
    """
    family = family_of(model.config.model_type)
    heads, kv, ffn = layer_shapes(model)
    head_dim = model.model.layers[0].self_attn.head_dim
    full_width = all(n * head_dim == model.config.hidden_size for n in heads)
    arch = choose_arch(family, heads, kv, ffn, full_width, arch)
    if family.check_gguf:
        family.check_gguf(model.config)
    n_vocab = model.get_input_embeddings().weight.shape[0]

    kept = getattr(model.config, "kept_tokens", None)
    header = read_header(source_gguf) if source_gguf is not None else None
    fields = header.fields if header else {}
    if header:
        vocab = read_vocab(source_gguf, header)
        what = f"{source_gguf} has {len(vocab.tokens)} tokens"
    else:  # padded to the embedding's rows, unless it is the untrimmed tokenizer of a trimmed model
        vocab = vocab_from_hf_tokenizer(tokenizer, None if kept else n_vocab)
        what = f"the tokenizer has {len(vocab.tokens)} tokens"
    renumber = None
    if kept and len(vocab.tokens) > n_vocab:  # a model trimmed to `kept` of this vocabulary
        vocab, renumber = _trimmed(vocab, kept, what)
    if len(vocab.tokens) != n_vocab:
        raise UserError(f"{what}, the model's embedding has {n_vocab} rows")

    with written(Path(out_path)) as partial:
        writer = gguf.GGUFWriter(partial, arch)
        _write_general(writer, model, named=Keys.General.NAME in fields)
        _write_shapes(writer, model, family, arch, heads, kv, ffn)
        _write_vocab(writer, vocab, settings=source_gguf is None)
        _copy_source_fields(writer, fields, family, arch, renumber)
        tensors = list(gguf_tensors(model, family, arch))  # names, shapes and types: nothing converted yet
        for name, shape, dtype, _ in tensors:
            writer.add_tensor_info(name, shape, dtype, math.prod(shape) * dtype.itemsize)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for *_, convert in tensors:  # one tensor's converted copy at a time, not the whole model's
            writer.write_tensor_data(convert())
        writer.close()
    return Path(out_path)


def _copy_source_fields(writer, fields: dict, family: Family, arch: str, renumber: dict[int, int] | None) -> None:
    """The source GGUF's tokenizer, general and architecture keys that still hold and that the
    model's own were not written for, renamed for `arch`; with a trimmed vocabulary, token ids
    renumbered (a key naming a dropped token is left out)."""
    source_arch = fields.get(Keys.General.ARCHITECTURE, (b"",))[0].decode()
    skip = _FILE_KEYS | _VOCAB_KEYS | {key.format(arch=source_arch) for key in _SHAPE_KEYS}
    for key, (value, kind, item) in fields.items():
        if key in skip or item == GGUFValueType.ARRAY:  # nested arrays: no tokenizer or general key uses them
            continue
        if key.startswith(source_arch + "."):
            if source_arch not in family.gguf_archs:
                continue  # another family's settings
            key = arch + key[len(source_arch):]
        elif not key.startswith(("tokenizer.", "general.")):
            continue
        if renumber is not None and key.startswith("tokenizer.ggml.") and key.endswith("_token_id"):
            if value not in renumber:
                continue
            value = renumber[value]
        if key not in writer.kv_data[0]:
            writer.add_key_value(key, value, kind, item)


def _trimmed(vocab: GGUFVocab, kept: list[int], what: str) -> tuple[GGUFVocab, dict[int, int]]:
    """The vocabulary cut to the model's `config.kept_tokens`, and old id -> new id."""
    from ..cuts.trim import trimmed_vocab

    if max(kept) >= len(vocab.tokens):
        raise UserError(f"{what}, but the model keeps token {max(kept)} of its vocabulary (config.kept_tokens)")
    return trimmed_vocab(vocab, kept), {old: n for n, old in enumerate(kept)}


def _write_vocab(writer, vocab: GGUFVocab, settings: bool) -> None:
    """The tokenizer from the vocabulary: tokens, types, scores, merges and special ids, and with
    `settings` also the model, pre-tokenizer, BOS/EOS flags and chat template (a source GGUF's are
    copied as they are)."""
    writer.add_token_list(vocab.tokens)
    writer.add_token_types([int(t) for t in vocab.types])
    if vocab.scores is not None:
        writer.add_token_scores([float(s) for s in vocab.scores])
    if vocab.merges is not None:
        writer.add_token_merges(vocab.merges)
    for key, attr in _VOCAB_IDS.items():
        if getattr(vocab, attr) is not None:
            writer.add_uint32(key, int(getattr(vocab, attr)))
    if settings:
        writer.add_tokenizer_model(vocab.model)
        writer.add_tokenizer_pre(vocab.pre)
        writer.add_add_bos_token(vocab.add_bos)
        writer.add_add_eos_token(vocab.add_eos)
        if vocab.model == "llama":  # SentencePiece
            writer.add_add_space_prefix(vocab.add_space_prefix)
        if vocab.chat_template:
            writer.add_chat_template(vocab.chat_template)


def _write_general(writer, model, named: bool) -> None:
    """File type F16, quantization version, a size label for the pruned parameter count, and a
    name unless the source GGUF has one."""
    writer.add_file_type(int(gguf.LlamaFileType.MOSTLY_F16))
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    writer.add_size_label(gguf.size_label(sum(p.numel() for p in model.parameters()), 0, 0, 0))
    if not named:
        writer.add_name(Path(getattr(model.config, "name_or_path", "") or "model").name)


def _write_shapes(writer, model, family: Family, arch: str, heads, kv, ffn) -> None:
    """The architecture keys llama.cpp reads for this model's shapes and attention settings."""
    config = model.config
    head_dim = model.model.layers[0].self_attn.head_dim
    per_layer = GGUF_ARCHS[arch].per_layer
    writer.add_context_length(int(config.max_position_embeddings))
    writer.add_embedding_length(int(config.hidden_size))
    writer.add_block_count(int(config.num_hidden_layers))
    writer.add_vocab_size(int(model.get_input_embeddings().weight.shape[0]))
    writer.add_feed_forward_length(ffn if per_layer else ffn[0])
    writer.add_head_count(heads if per_layer else heads[0])
    writer.add_head_count_kv(kv if per_layer else kv[0])
    writer.add_key_length(head_dim)
    writer.add_value_length(head_dim)
    writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    writer.add_rope_freq_base(float(config.rope_theta))
    writer.add_rope_dimension_count(head_dim)
    if _rope_scaling(config, family) == "linear":
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(float(config.rope_scaling["factor"]))
    if family.gguf_metadata:
        family.gguf_metadata(writer, config)


def _rope_scaling(config, family: Family) -> str | None:
    """None, or the family's kind of rope scaling ('linear', 'llama3'); others are refused."""
    scaling = getattr(config, "rope_scaling", None)
    if not scaling:
        return None
    kind = scaling.get("rope_type", scaling.get("type"))
    if kind == "default":
        return None
    if kind in family.rope_scalings:
        return kind
    raise UserError(f"rope scaling {kind!r} of a {family.name} model is not supported by the GGUF export "
                    f"(supported: {', '.join(family.rope_scalings)})")


def gguf_tensors(model, family: Family, arch: str) -> Iterator[tuple[str, tuple, np.dtype, Callable[[], np.ndarray]]]:
    """(GGUF name, shape, type, conversion) of every weight in llama.cpp's conventions: F16 matrices, F32 vectors.
    The conversion makes the array when called, so that a writer holds one converted tensor at a time."""
    names = gguf_name_map(model, arch)
    tied = model.get_output_embeddings().weight is model.get_input_embeddings().weight
    rope_interleaved = GGUF_ARCHS[arch].interleaved_rope
    head_dim = model.model.layers[0].self_attn.head_dim
    for name, tensor in model.state_dict(keep_vars=False).items():
        if name == "lm_head.weight" and tied:
            continue
        gguf_name = names.get_name(name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            raise UserError(f"{name}: no GGUF tensor of architecture {arch!r} corresponds to this weight")
        offset = family.norm_offset if name.endswith("norm.weight") else 0
        interleave = rope_interleaved and name.endswith(("q_proj.weight", "q_proj.bias", "k_proj.weight",
                                                         "k_proj.bias"))
        yield (gguf_name, tuple(tensor.shape), _gguf_dtype(tensor.ndim),
               functools.partial(_converted, tensor, gguf_name, offset, head_dim if interleave else None))
    if _rope_scaling(model.config, family) == "llama3":
        factors = llama3_rope_factors(model.config).numpy().astype(np.float32)
        yield "rope_freqs.weight", factors.shape, factors.dtype, lambda: factors


def _converted(tensor: torch.Tensor, gguf_name: str, offset: float, interleave_head_dim: int | None) -> np.ndarray:
    """One weight as the GGUF stores it: norms offset (Gemma's 1 + w), q/k rows interleaved for llama.cpp's rope."""
    data = tensor.detach().to(torch.float32)
    if offset:
        data = data + offset
    if interleave_head_dim:
        data = interleave_rope_rows(data, interleave_head_dim)
    return _to_numpy(data, gguf_name)


def gguf_name_map(model, arch: str) -> gguf.TensorNameMap:
    """gguf-py's map from the model's parameter names to the tensor names of llama.cpp's architecture `arch`."""
    by_name = {name: key for key, name in gguf.MODEL_ARCH_NAMES.items()}
    return gguf.get_tensor_name_map(by_name[arch], model.config.num_hidden_layers)


def interleave_rope_rows(weight: torch.Tensor, head_dim: int) -> torch.Tensor:
    """Reorder each head's rows from transformers' rotate-half halves to llama.cpp's adjacent pairs."""
    shape = weight.shape
    return weight.reshape(-1, 2, head_dim // 2, *shape[1:]).transpose(1, 2).reshape(shape)


def llama3_rope_factors(config) -> torch.Tensor:
    """Per-frequency divisors that turn plain rope into Llama 3's scaled rope (`rope_freqs`)."""
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    plain, _ = ROPE_INIT_FUNCTIONS["default"](config, "cpu")
    scaled, _ = ROPE_INIT_FUNCTIONS["llama3"](config, "cpu")
    return (plain / scaled).to(torch.float32)


def _gguf_dtype(ndim: int) -> np.dtype:
    """F32 for 1-D tensors (norms, biases), F16 for matrices."""
    return np.dtype(np.float16 if ndim >= 2 else np.float32)


def _to_numpy(data: torch.Tensor, name: str) -> np.ndarray:
    """The weight at its GGUF type (`_gguf_dtype`), refusing values F16 cannot hold."""
    array = data.numpy().astype(_gguf_dtype(data.ndim))
    if array.dtype == np.float16 and not np.isfinite(array).all():
        raise UserError(f"{name}: values beyond the float16 range ({float(data.abs().max()):.3g})")
    return array
