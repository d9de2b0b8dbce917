"""GGUF export of (pruned) models for llama.cpp, and quantization with llama.cpp's own quantizer.

`export_gguf` writes the torch weights as F16 (1-D tensors, i.e. norms and biases, as F32) under
the llama.cpp architecture that can hold the model's shapes:

- `gemma3`, `llama`, `qwen2`, `qwen3`: one head count, KV head count and FFN width for all layers
  (which heads a layer kept may differ). A Gemma 3 model pruned to different counts per layer is
  refused: llama.cpp has no Gemma 3 graph with per-layer counts.
- `deci`: a Llama-family model with per-layer counts (arrays for `attention.head_count`,
  `attention.head_count_kv` and `feed_forward_length`; `attention.key_length` / `value_length`
  explicit, since llama.cpp would otherwise derive them from the first layer's head count).

Conventions follow llama.cpp's converter: tensor names from gguf-py's tensor map, q/k rows of the
`llama` / `deci` architectures reordered from the rotate-half layout of transformers to the
interleaved pairs of llama.cpp's rope, Gemma's norm weights stored as 1 + w.

Tokenizer metadata is written from a vocabulary (`tokenizer.GGUFVocab`): the source GGUF's (whose
other `tokenizer.*` keys are copied, with the `general.*` and architecture keys that still hold,
renamed for the target architecture) or, for a model loaded from a Hugging Face directory, the Hugging
Face tokenizer's (byte-level BPE only). A model whose vocabulary was trimmed (`vocab.trim_embeddings`,
`config.kept_tokens`) gets that vocabulary cut to its kept tokens, renumbered as its embedding rows.
"""

import ctypes
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import UserError
from .families import Family, family_of
from .heads import head_counts, kv_head_counts
from .tokenizer import GGUFVocab, vocab_from_hf_tokenizer

# llama.cpp's gemma3 graph hard-codes these (llama-model.cpp): every 6th layer is global, local
# layers use rope base 10000, and attention scales by 1/sqrt(head_dim).
GEMMA3_SWA_PATTERN = 6
GEMMA3_LOCAL_ROPE_BASE = 10000.0

# llama.cpp architectures whose graph sizes the query projection to the hidden size.
_FULL_WIDTH_ATTENTION = {"qwen2"}

QUANT_KINDS = {"Q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0", "Q4_K_M": "LLAMA_FTYPE_MOSTLY_Q4_K_M"}

# Keys describing the network's shape, always written from the model; a source GGUF's values are
# not copied for these (they may no longer hold), nor for its rope scaling.
_SHAPE_KEYS = {
    "context_length", "embedding_length", "block_count", "feed_forward_length", "vocab_size",
    "attention.head_count", "attention.head_count_kv", "attention.key_length", "attention.value_length",
    "attention.layer_norm_rms_epsilon", "attention.sliding_window", "rope.freq_base",
    "rope.dimension_count", "final_logit_softcapping",
}
# general.* keys that describe the file rather than the model: never copied.
_FILE_KEYS = {"general.architecture", "general.file_type", "general.quantization_version", "general.alignment",
              "general.size_label"}
# The tokenizer.ggml.* keys written from the vocabulary itself (ids depend on which tokens are kept).
_VOCAB_IDS = {"bos_token_id": "bos_id", "eos_token_id": "eos_id", "unknown_token_id": "unk_id",
              "padding_token_id": "pad_id"}


class _Metadata(dict):
    """key -> (value, GGUFValueType, array item type or None); `put` infers the types of plain values."""

    def put(self, key: str, value: Any, kind=None) -> None:
        from gguf import GGUFValueType as T

        if isinstance(value, (list, tuple)):
            self[key] = (list(value), T.ARRAY, kind or T.INT32)  # int arrays as the converter writes them
        elif isinstance(value, bool):
            self[key] = (value, T.BOOL, None)
        elif isinstance(value, int):
            self[key] = (value, kind or T.UINT32, None)
        elif isinstance(value, float):
            self[key] = (value, kind or T.FLOAT32, None)
        else:
            self[key] = (value, T.STRING, None)


def layer_shapes(model) -> tuple[list[int], list[int], list[int]]:
    """Per layer: query heads, KV heads, FFN width, read from the actual weights."""
    ffn = [layer.mlp.up_proj.out_features for layer in model.model.layers]
    return head_counts(model), kv_head_counts(model), ffn


def choose_arch(
    family: Family, heads: list[int], kv: list[int], ffn: list[int], full_width: bool = True, arch: str | None = None
) -> str:
    """The llama.cpp architecture for these per-layer shapes (or check the one asked for).

    full_width: whether query heads x head_dim equals the hidden size in every layer; llama.cpp's
    qwen2 graph needs that, so a Qwen2 model with pruned heads has no GGUF architecture here.
    """
    uniform = len(set(heads)) == len(set(kv)) == len(set(ffn)) == 1
    allowed = [a for a in (family.gguf_arch, family.free_gguf_arch) if a]
    if arch is not None and arch not in allowed:
        raise UserError(f"a {family.name} model exports to GGUF as {' or '.join(allowed)}, not {arch!r}")
    own_fits = uniform and (full_width or family.gguf_arch not in _FULL_WIDTH_ATTENTION)
    chosen = arch or (family.gguf_arch if own_fits else family.free_gguf_arch)
    if chosen is None or (chosen == family.gguf_arch and not own_fits):
        shapes = f"per-layer query heads {heads}, KV heads {kv}, FFN widths {ffn}"
        if uniform:
            reason = f"llama.cpp's {family.gguf_arch!r} graph needs all query heads (it sizes attention to the hidden size)"
        else:
            reason = (f"llama.cpp's {family.gguf_arch!r} architecture takes one head count, KV head count and FFN width for all "
                      "layers; prune the same number of heads in every layer (which heads may differ)")
        alternative = f", or export as {family.free_gguf_arch!r}" if family.free_gguf_arch else ""
        raise UserError(f"this {family.name} model cannot be written as GGUF: it has {shapes}; {reason}{alternative}")
    return chosen


def export_gguf(model, source_gguf: Path | None, tokenizer, out_path: Path, arch: str | None = None) -> Path:
    """Write `model` (pruned or not) as an F16 GGUF that llama.cpp loads; returns out_path.

    source_gguf: the GGUF the model came from, whose tokenizer and general metadata are copied
    (its vocabulary cut to `config.kept_tokens` for a trimmed model); None for a model from a
    Hugging Face directory, whose `tokenizer` is then written instead (the trimmed tokenizer of a
    trimmed model, or the original one, which is then cut the same way).
    arch: the llama.cpp architecture; by default the family's own when every layer has the same
    shapes, else its per-layer one (`deci` for Llama).
    """
    import gguf

    family = family_of(model.config.model_type)
    heads, kv, ffn = layer_shapes(model)
    head_dim = model.model.layers[0].self_attn.head_dim
    full_width = all(n * head_dim == model.config.hidden_size for n in heads)
    arch = choose_arch(family, heads, kv, ffn, full_width, arch)
    if family.name == "gemma3":
        _check_gemma3(model.config)
    n_vocab = model.get_input_embeddings().weight.shape[0]

    meta = _Metadata()
    kept = getattr(model.config, "kept_tokens", None)
    if source_gguf is not None:
        vocab = _copy_source_metadata(meta, Path(source_gguf), family, arch)
        what = f"{source_gguf} has {len(vocab.tokens)} tokens"
    else:  # padded to the embedding's rows, unless it is the untrimmed tokenizer of a trimmed model
        vocab = vocab_from_hf_tokenizer(tokenizer, None if kept else n_vocab)
        what = f"the tokenizer has {len(vocab.tokens)} tokens"
    if kept and len(vocab.tokens) > n_vocab:  # a model trimmed to `kept` of this vocabulary
        vocab = _trimmed(meta, vocab, kept, what)
    if len(vocab.tokens) != n_vocab:
        raise UserError(f"{what}, the model's embedding has {n_vocab} rows")
    _vocab_metadata(meta, vocab, settings=source_gguf is None)
    _general_metadata(meta, model)
    _shape_metadata(meta, model, family, arch, heads, kv, ffn)

    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    partial = out_path.with_name(out_path.name + ".partial")
    writer = gguf.GGUFWriter(partial, arch)
    order = {"general": 0, arch: 1, "tokenizer": 2}
    for key, (value, kind, item_kind) in sorted(meta.items(), key=lambda item: order.get(item[0].split(".")[0], 3)):
        writer.add_key_value(key, value, kind, item_kind)
    for name, array in gguf_tensors(model, family, arch):
        writer.add_tensor(name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    partial.replace(out_path)
    return out_path


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


def _read_fields(path: Path) -> dict[str, tuple[Any, Any, Any]]:
    """A GGUF's metadata as key -> (value, type, array item type); strings stay raw bytes."""
    from gguf import GGUFReader, GGUFValueType as T

    try:
        reader = GGUFReader(str(path))
    except Exception as err:  # gguf raises ValueError, struct.error, ... on a damaged file
        raise UserError(f"{path} is not a readable GGUF file ({err})")
    out = {}
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or not field.types:
            continue
        kind = field.types[0]
        if kind == T.ARRAY:
            item = field.types[-1]
            if len(field.types) > 2:
                continue  # nested arrays: no tokenizer or general key uses them
            if item == T.STRING:
                value = [bytes(field.parts[i]) for i in field.data]
            else:
                value = np.concatenate([field.parts[i] for i in field.data]).tolist() if field.data else []
            out[key] = (value, kind, item)
        elif kind == T.STRING:
            out[key] = (bytes(field.parts[field.data[0]]), kind, None)
        else:
            out[key] = (field.parts[field.data[0]][0].item(), kind, None)
    return out


def _copy_source_metadata(meta: _Metadata, source: Path, family: Family, arch: str) -> GGUFVocab:
    """Tokenizer, general and still-valid architecture keys of the source GGUF, renamed for `arch`;
    returns its vocabulary."""
    fields = _read_fields(source)
    source_arch = fields.get("general.architecture", (b"",))[0].decode()
    if "tokenizer.ggml.tokens" not in fields:
        raise UserError(f"{source} has no tokenizer (tokenizer.ggml.tokens)")
    same_family = source_arch in (family.gguf_arch, family.free_gguf_arch)
    for key, value in fields.items():
        if key.startswith("tokenizer.") or (key.startswith("general.") and key not in _FILE_KEYS):
            meta[key] = value
        elif same_family and key.startswith(source_arch + "."):
            suffix = key[len(source_arch) + 1:]
            if suffix not in _SHAPE_KEYS and not suffix.startswith("rope.scaling."):
                meta[f"{arch}.{suffix}"] = value

    def get(key, default=None):
        if key not in fields:
            return default
        value = fields[key][0]
        if isinstance(value, list):
            return [v.decode() if isinstance(v, bytes) else v for v in value]
        return value.decode() if isinstance(value, bytes) else value

    return GGUFVocab.from_metadata(get)


def _trimmed(meta: _Metadata, vocab: GGUFVocab, kept: list[int], what: str) -> GGUFVocab:
    """The vocabulary cut to the model's `config.kept_tokens`; other token-id keys remapped or dropped."""
    from .vocab import trimmed_vocab

    if max(kept) >= len(vocab.tokens):
        raise UserError(f"{what}, but the model keeps token {max(kept)} of its vocabulary (config.kept_tokens)")
    new = {old: n for n, old in enumerate(kept)}
    for key in [k for k in meta if k.startswith("tokenizer.ggml.") and k.endswith("_token_id")]:
        if key.removeprefix("tokenizer.ggml.") not in _VOCAB_IDS:
            if meta[key][0] in new:
                meta[key] = (new[meta[key][0]], *meta[key][1:])
            else:
                del meta[key]
    return trimmed_vocab(vocab, kept)


def _vocab_metadata(meta: _Metadata, vocab: GGUFVocab, settings: bool) -> None:
    """tokenizer.ggml.* from the vocabulary: tokens, types, scores, merges and special ids, and with
    `settings` also the model, pre-tokenizer, BOS/EOS flags and chat template (a source GGUF's are
    copied as they are)."""
    from gguf import GGUFValueType as T

    meta.put("tokenizer.ggml.tokens", vocab.tokens, T.STRING)
    meta.put("tokenizer.ggml.token_type", vocab.types, T.INT32)
    if vocab.scores is not None:
        meta.put("tokenizer.ggml.scores", vocab.scores, T.FLOAT32)
    if vocab.merges is not None:
        meta.put("tokenizer.ggml.merges", vocab.merges, T.STRING)
    for key, attr in _VOCAB_IDS.items():
        token_id = getattr(vocab, attr)
        if token_id is None:
            meta.pop(f"tokenizer.ggml.{key}", None)
        else:
            meta.put(f"tokenizer.ggml.{key}", int(token_id))
    if settings:
        meta.put("tokenizer.ggml.model", vocab.model)
        meta.put("tokenizer.ggml.pre", vocab.pre)
        meta.put("tokenizer.ggml.add_bos_token", vocab.add_bos)
        meta.put("tokenizer.ggml.add_eos_token", vocab.add_eos)
        if vocab.model == "llama":
            meta.put("tokenizer.ggml.add_space_prefix", vocab.add_space_prefix)
        if vocab.chat_template:
            meta.put("tokenizer.chat_template", vocab.chat_template)


def _general_metadata(meta: _Metadata, model) -> None:
    """File type F16, quantization version, a size label for the pruned parameter count, a name."""
    import gguf

    meta.put("general.file_type", int(gguf.LlamaFileType.MOSTLY_F16))
    meta.put("general.quantization_version", gguf.GGML_QUANT_VERSION)
    n_params = sum(p.numel() for p in model.parameters())
    meta.put("general.size_label", gguf.size_label(n_params, 0, 0, 0))
    if "general.name" not in meta:
        meta.put("general.name", Path(getattr(model.config, "name_or_path", "") or "model").name)


def _shape_metadata(meta: _Metadata, model, family: Family, arch: str, heads, kv, ffn) -> None:
    """The architecture keys llama.cpp reads for this model's shapes and attention settings."""
    config = model.config
    head_dim = model.model.layers[0].self_attn.head_dim
    per_layer = arch == family.free_gguf_arch
    meta.put(f"{arch}.context_length", int(config.max_position_embeddings))
    meta.put(f"{arch}.embedding_length", int(config.hidden_size))
    meta.put(f"{arch}.block_count", int(config.num_hidden_layers))
    meta.put(f"{arch}.vocab_size", int(model.get_input_embeddings().weight.shape[0]))
    meta.put(f"{arch}.feed_forward_length", ffn if per_layer else ffn[0])
    meta.put(f"{arch}.attention.head_count", heads if per_layer else heads[0])
    meta.put(f"{arch}.attention.head_count_kv", kv if per_layer else kv[0])
    meta.put(f"{arch}.attention.key_length", head_dim)
    meta.put(f"{arch}.attention.value_length", head_dim)
    meta.put(f"{arch}.attention.layer_norm_rms_epsilon", float(config.rms_norm_eps))
    meta.put(f"{arch}.rope.freq_base", float(config.rope_theta))
    meta.put(f"{arch}.rope.dimension_count", head_dim)
    scaling = _rope_scaling(config)
    if scaling == "linear":
        meta.put(f"{arch}.rope.scaling.type", "linear")
        meta.put(f"{arch}.rope.scaling.factor", float(config.rope_scaling["factor"]))
    if family.name == "gemma3":
        meta.put(f"{arch}.attention.sliding_window", int(config.sliding_window))
        if getattr(config, "final_logit_softcapping", None):
            meta.put(f"{arch}.final_logit_softcapping", float(config.final_logit_softcapping))


def _rope_scaling(config) -> str | None:
    """None, 'linear' or 'llama3' (the kinds this exporter writes); others are refused."""
    scaling = getattr(config, "rope_scaling", None)
    if not scaling:
        return None
    kind = scaling.get("rope_type", scaling.get("type"))
    if kind == "default":
        return None
    if kind == "linear" or (kind == "llama3" and config.model_type == "llama"):
        return kind
    raise UserError(f"rope scaling {kind!r} is not supported by the GGUF export (supported: linear, llama3 for Llama)")


def gguf_tensors(model, family: Family, arch: str) -> Iterator[tuple[str, np.ndarray]]:
    """(GGUF name, array) for every weight: F16 matrices, F32 vectors, in llama.cpp's conventions."""
    import gguf

    by_name = {name: key for key, name in gguf.MODEL_ARCH_NAMES.items()}
    names = gguf.get_tensor_name_map(by_name[arch], model.config.num_hidden_layers)
    tied = model.get_output_embeddings().weight is model.get_input_embeddings().weight
    rope_interleaved = arch in ("llama", "deci")
    head_dim = model.model.layers[0].self_attn.head_dim
    for name, tensor in model.state_dict(keep_vars=False).items():
        if name == "lm_head.weight" and tied:
            continue
        data = tensor.detach().to(torch.float32)
        if family.name == "gemma3" and name.endswith("norm.weight"):
            data = data + 1.0  # transformers' Gemma RMSNorm scales by (1 + w), llama.cpp's by w
        if rope_interleaved and name.endswith(("q_proj.weight", "q_proj.bias", "k_proj.weight", "k_proj.bias")):
            data = interleave_rope_rows(data, head_dim)
        gguf_name = names.get_name(name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            raise UserError(f"{name}: no GGUF tensor of architecture {arch!r} corresponds to this weight")
        yield gguf_name, _to_numpy(data, gguf_name)
    if _rope_scaling(model.config) == "llama3":
        yield "rope_freqs.weight", llama3_rope_factors(model.config).numpy().astype(np.float32)


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


def _to_numpy(data: torch.Tensor, name: str) -> np.ndarray:
    """F32 for 1-D tensors (norms, biases), F16 for matrices, refusing values F16 cannot hold."""
    if data.ndim < 2:
        return data.numpy().astype(np.float32)
    half = data.numpy().astype(np.float16)
    if not np.isfinite(half).all():
        raise UserError(f"{name}: values beyond the float16 range ({float(data.abs().max()):.3g})")
    return half


def quantize_gguf(src: Path, dst: Path, kind: str, threads: int = 0) -> Path:
    """Quantize an F16 GGUF with llama.cpp's own quantizer (kind: Q8_0 or Q4_K_M); returns dst.

    llama.cpp picks fallbacks itself where a tensor's rows do not fit the block size (K-quants need
    rows of a multiple of 256, e.g. Q5_0 instead of Q4_K). Its log is kept and shown on failure.
    """
    import llama_cpp

    if kind not in QUANT_KINDS:
        raise UserError(f"quantization {kind!r} is not supported (supported: {', '.join(QUANT_KINDS)})")
    src, dst = Path(src), Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    partial = dst.with_name(dst.name + ".partial")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, QUANT_KINDS[kind])
    params.nthread = threads
    llama_cpp.llama_backend_init()
    with _llama_log() as log:
        status = llama_cpp.llama_model_quantize(str(src).encode(), str(partial).encode(), ctypes.byref(params))
    if status != 0:
        partial.unlink(missing_ok=True)
        tail = "".join(log)[-2000:]
        raise UserError(f"llama.cpp could not quantize {src.name} to {kind}:\n{tail}")
    partial.replace(dst)
    return dst


@contextmanager
def _llama_log():
    """Collect llama.cpp's log lines instead of printing them; restores llama-cpp-python's logger."""
    import llama_cpp
    from llama_cpp import _logger

    lines: list[str] = []

    @llama_cpp.llama_log_callback
    def collect(level, text, user_data):
        lines.append(text.decode("utf-8", errors="replace"))

    llama_cpp.llama_log_set(collect, ctypes.c_void_p(0))
    try:
        yield lines
    finally:
        llama_cpp.llama_log_set(_logger.llama_log_callback, ctypes.c_void_p(0))
