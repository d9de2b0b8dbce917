"""A Hugging Face fast tokenizer that tokenizes exactly as llama.cpp does on the same GGUF.

transformers' own GGUF tokenizer conversion does not match llama.cpp for Gemma 3 (it nearly
doubles the token count). This module rebuilds the tokenizer from the GGUF vocabulary the way
llama.cpp's tokenizers work:

- `llama` (SentencePiece BPE, Gemma): spaces become '▁' (no prefix unless
  `add_space_prefix`), then adjacent symbols merge, highest-scoring merged token first, with
  `<0xXX>` byte fallback. That is BPE whose merge ranks follow the merged token's score.
  User-defined tokens (newline and space runs, ...) are split out of the raw text first.
- `gpt2` (byte-level BPE, SmolLM2): merges as listed, after the pre-tokenizer regex that
  llama.cpp uses for the vocabulary's `tokenizer.ggml.pre`.

Tests compare the ids with llama-cpp-python on UDHR text in many scripts.
"""

from dataclasses import dataclass
from pathlib import Path

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

from .errors import UserError

# llama.cpp token types (llama_token_type in gguf)
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6

# The pre-tokenizer regexes llama.cpp applies per `tokenizer.ggml.pre` value, for byte-level BPE.
_GPT2_SPLIT = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
_PRE_SPLITS = {
    "gpt2": [_GPT2_SPLIT],
    "gpt-2": [_GPT2_SPLIT],
    "smollm": [r"\p{N}", _GPT2_SPLIT],
    "starcoder": [r"\p{N}", _GPT2_SPLIT],
}


@dataclass
class GGUFVocab:
    """The tokenizer part of a GGUF's metadata, as plain values."""

    model: str  # 'llama' (SentencePiece) or 'gpt2' (byte-level BPE)
    pre: str
    tokens: list[str]
    types: list[int]
    scores: list[float] | None
    merges: list[str] | None
    bos_id: int | None
    eos_id: int | None
    unk_id: int | None
    pad_id: int | None
    add_bos: bool
    add_eos: bool
    add_space_prefix: bool

    @classmethod
    def from_reader(cls, reader) -> "GGUFVocab":
        def get(key, default=None):
            field = reader.fields.get(f"tokenizer.ggml.{key}")
            return default if field is None else field.contents()

        model = get("model")
        return cls(
            model=model,
            pre=get("pre", "default"),
            tokens=get("tokens"),
            types=get("token_type"),
            scores=get("scores"),
            merges=get("merges"),
            bos_id=get("bos_token_id"),
            eos_id=get("eos_token_id"),
            unk_id=get("unknown_token_id"),
            pad_id=get("padding_token_id"),
            add_bos=bool(get("add_bos_token", model == "llama")),
            add_eos=bool(get("add_eos_token", False)),
            add_space_prefix=bool(get("add_space_prefix", model == "llama")),
        )


def read_vocab(gguf_path: str | Path) -> GGUFVocab:
    from gguf import GGUFReader

    return GGUFVocab.from_reader(GGUFReader(str(gguf_path)))


def _spm_merges(tokens: list[str], types: list[int], scores: list[float]) -> list[tuple[str, str]]:
    """Every split of every mergeable token into two tokens, ordered by the merged token's score."""
    index = {t: i for i, t in enumerate(tokens) if types[i] != BYTE}
    ranked = []
    for i, tok in enumerate(tokens):
        if types[i] == BYTE or len(tok) < 2:
            continue
        for k in range(1, len(tok)):
            left, right = tok[:k], tok[k:]
            if left in index and right in index:
                ranked.append((-scores[i], i, index[left], left, right))
    ranked.sort()
    return [(left, right) for *_, left, right in ranked]


def _spm_tokenizer(v: GGUFVocab) -> Tokenizer:
    vocab = {tok: i for i, tok in enumerate(v.tokens)}
    unk = v.tokens[v.unk_id] if v.unk_id is not None else None
    bpe = models.BPE(vocab, _spm_merges(v.tokens, v.types, v.scores), unk_token=unk, byte_fallback=True)
    tok = Tokenizer(bpe)
    steps = [normalizers.Prepend("▁")] if v.add_space_prefix else []
    tok.normalizer = normalizers.Sequence(steps + [normalizers.Replace(" ", "▁")])
    tok.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
        + ([decoders.Strip(" ", 1, 0)] if v.add_space_prefix else [])
    )
    return tok


def _bpe_tokenizer(v: GGUFVocab) -> Tokenizer:
    if v.pre not in _PRE_SPLITS:
        raise UserError(
            f"byte-level BPE vocabulary with pre-tokenizer {v.pre!r} is not supported "
            f"(supported: {', '.join(_PRE_SPLITS)})"
        )
    vocab = {tok: i for i, tok in enumerate(v.tokens)}
    merges = [tuple(m.split(" ", 1)) for m in v.merges]
    tok = Tokenizer(models.BPE(vocab, merges, ignore_merges=False))
    splits = [pre_tokenizers.Split(Regex(rx), behavior="isolated") for rx in _PRE_SPLITS[v.pre]]
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        splits + [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]
    )
    tok.decoder = decoders.ByteLevel()
    return tok


def _add_special_tokens(tok: Tokenizer, v: GGUFVocab) -> None:
    """Control tokens are special (only parsed when asked); user-defined ones always split out."""
    added = []
    for i, (text, kind) in enumerate(zip(v.tokens, v.types)):
        if kind in (CONTROL, UNKNOWN):
            added.append(AddedToken(text, special=True, normalized=False))
        elif kind == USER_DEFINED:
            added.append(AddedToken(text, special=False, normalized=False))
    tok.add_tokens(added)


def _add_post_processor(tok: Tokenizer, v: GGUFVocab) -> None:
    bos = [(v.tokens[v.bos_id], v.bos_id)] if v.add_bos and v.bos_id is not None else []
    eos = [(v.tokens[v.eos_id], v.eos_id)] if v.add_eos and v.eos_id is not None else []
    single = " ".join([t for t, _ in bos] + ["$A"] + [t for t, _ in eos])
    pair = " ".join([t for t, _ in bos] + ["$A"] + [t for t, _ in eos] + ["$B:1"] + [t for t, _ in eos])
    tok.post_processor = processors.TemplateProcessing(single=single, pair=pair, special_tokens=bos + eos)


def tokenizer_from_vocab(v: GGUFVocab):
    """A transformers PreTrainedTokenizerFast equivalent to llama.cpp's tokenizer for `v`."""
    from transformers import PreTrainedTokenizerFast

    if v.model == "llama":
        tok = _spm_tokenizer(v)
    elif v.model == "gpt2":
        tok = _bpe_tokenizer(v)
    else:
        raise UserError(f"GGUF tokenizer model {v.model!r} is not supported (supported: llama, gpt2)")
    _add_special_tokens(tok, v)
    _add_post_processor(tok, v)

    def name(i):
        return v.tokens[i] if i is not None and i < len(v.tokens) else None

    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=name(v.bos_id),
        eos_token=name(v.eos_id),
        unk_token=name(v.unk_id),
        pad_token=name(v.pad_id),
        split_special_tokens=True,  # like llama.cpp without parse_special: "<bos>" in text is text
    )


def tokenizer_from_gguf(gguf_path: str | Path):
    return tokenizer_from_vocab(read_vocab(gguf_path))
