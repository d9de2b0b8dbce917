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

`hf_vocab.vocab_from_hf_tokenizer` goes the other way.
"""

from dataclasses import dataclass
from pathlib import Path

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

from ..errors import UserError

# llama.cpp token types (llama_token_type in gguf)
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6

# The pre-tokenizer regexes llama.cpp applies per `tokenizer.ggml.pre` value, for byte-level BPE.
_GPT2_SPLIT = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
# Llama 3 (`llama-bpe`) and Qwen2/2.5/3 (`qwen2`): case-insensitive contractions, a letter run with one
# leading non-letter, digits in runs of up to 3 (Llama 3) or one at a time (Qwen2), newlines kept apart
_LLAMA3_SPLIT = (r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                 r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_PRE_SPLITS = {
    "gpt2": [_GPT2_SPLIT],
    "gpt-2": [_GPT2_SPLIT],
    "smollm": [r"\p{N}", _GPT2_SPLIT],
    "starcoder": [r"\p{N}", _GPT2_SPLIT],
    "llama-bpe": [_LLAMA3_SPLIT],
    "qwen2": [_LLAMA3_SPLIT.replace(r"\p{N}{1,3}", r"\p{N}")],
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
    chat_template: str | None = None

    @classmethod
    def from_metadata(cls, get) -> "GGUFVocab":
        """get(key, default): the plain value of a GGUF metadata key (strings decoded)."""
        from gguf import Keys

        t = Keys.Tokenizer
        model = get(t.MODEL)
        return cls(
            model=model,
            pre=get(t.PRE, "default"),
            tokens=get(t.LIST),
            types=get(t.TOKEN_TYPE),
            scores=get(t.SCORES),
            merges=get(t.MERGES),
            bos_id=get(t.BOS_ID),
            eos_id=get(t.EOS_ID),
            unk_id=get(t.UNK_ID),
            pad_id=get(t.PAD_ID),
            add_bos=bool(get(t.ADD_BOS, model == "llama")),
            add_eos=bool(get(t.ADD_EOS, False)),
            add_space_prefix=bool(get(t.ADD_PREFIX, model == "llama")),
            chat_template=get(t.CHAT_TEMPLATE, None),
        )


def read_vocab(gguf_path: str | Path, header=None) -> GGUFVocab:
    """The vocabulary of a GGUF file, from its `gguf_file.read_header` (read here unless given)."""
    from gguf import Keys

    from .gguf_file import read_header

    header = header or read_header(gguf_path)
    if Keys.Tokenizer.LIST not in header.fields:
        raise UserError(f"{gguf_path} has no tokenizer ({Keys.Tokenizer.LIST})")
    return GGUFVocab.from_metadata(header.get)


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
    for text, kind in zip(v.tokens, v.types):
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


def check_vocab(v: GGUFVocab) -> None:
    """Refuse a GGUF vocabulary whose tokenizer `tokenizer_from_vocab` cannot build as llama.cpp splits."""
    if v.model not in ("llama", "gpt2"):
        raise UserError(f"GGUF tokenizer model {v.model!r} is not supported (supported: llama, gpt2)")
    if v.model == "gpt2" and v.pre not in _PRE_SPLITS:
        raise UserError(
            f"byte-level BPE vocabulary with pre-tokenizer {v.pre!r} is not supported "
            f"(supported: {', '.join(_PRE_SPLITS)})"
        )


def tokenizer_from_vocab(v: GGUFVocab):
    """A transformers PreTrainedTokenizerFast equivalent to llama.cpp's tokenizer for `v`."""
    from transformers import PreTrainedTokenizerFast

    check_vocab(v)
    tok = _spm_tokenizer(v) if v.model == "llama" else _bpe_tokenizer(v)
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
        **({"chat_template": v.chat_template} if v.chat_template else {}),
    )


def tokenizer_from_gguf(gguf_path: str | Path):
    return tokenizer_from_vocab(read_vocab(gguf_path))
