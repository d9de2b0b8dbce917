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

`vocab_from_hf_tokenizer` goes the other way, for a byte-level BPE Hugging Face tokenizer: its
GGUF vocabulary, with the llama.cpp pre-tokenizer name that splits text as it does.
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


# -- a Hugging Face byte-level BPE tokenizer as a GGUF vocabulary --------------------------------

# Byte-level BPE pre-tokenizers: llama.cpp's name -> the name this module reproduces it under.
_BPE_PRES = {"gpt-2": "gpt2", "smollm": "smollm"}
_PROBE_TEXT = (
    "Hello world! It's 2024: we've 12345 items, they'll cost $3.50 x2 1st 7.\n\n  Spaces   and\ttabs\n"
    "Alle Menschen sind frei und gleich an Würde. Все люди рождаются свободными. "
    "人人生而自由。 يولد جميع الناس أحراراً 🙂 end..."
)


def vocab_from_hf_tokenizer(tokenizer, n_vocab: int | None = None) -> GGUFVocab:
    """The GGUF vocabulary (gpt2 style) of a byte-level BPE Hugging Face tokenizer.

    n_vocab: pad with unused `[PAD{i}]` tokens to this many (an embedding larger than the
    tokenizer); a tokenizer with more tokens is refused.
    """
    state = _backend_state(tokenizer)
    vocab = tokenizer.backend_tokenizer.get_vocab(with_added_tokens=True)
    size = max(vocab.values()) + 1
    if n_vocab is not None and size > n_vocab:
        raise UserError(f"the tokenizer has ids up to {size - 1}, the model's embedding {n_vocab} rows")
    size = max(size, n_vocab or 0)
    added = {t.content: t.special for t in tokenizer.added_tokens_decoder.values()}
    tokens, types = [f"[PAD{i}]" for i in range(size)], [UNUSED] * size
    for text, i in vocab.items():
        tokens[i] = text
        types[i] = (CONTROL if added[text] else USER_DEFINED) if text in added else NORMAL
    merges = [m if isinstance(m, str) else " ".join(m) for m in state["model"]["merges"]]
    ids = {key: getattr(tokenizer, f"{key}_token_id") for key in ("bos", "eos", "unk", "pad")}
    add_bos, add_eos = _adds_bos_eos(tokenizer)
    return GGUFVocab(
        model="gpt2", pre=_detect_pre(tokenizer, state, tokens, types, merges), tokens=tokens, types=types,
        scores=None, merges=merges, bos_id=ids["bos"], eos_id=ids["eos"], unk_id=ids["unk"], pad_id=ids["pad"],
        add_bos=add_bos, add_eos=add_eos, add_space_prefix=False,
        chat_template=getattr(tokenizer, "chat_template", None) or None,
    )


def _backend_state(tokenizer) -> dict:
    """The tokenizers JSON of a byte-level BPE tokenizer; a UserError for any other kind."""
    import json

    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise UserError("only fast (tokenizers-backed) Hugging Face tokenizers can be written to GGUF")
    state = json.loads(backend.to_str())
    check_byte_level(state)
    return state


def check_byte_level(state: dict) -> None:
    """Refuse a tokenizers JSON (tokenizer.json) that is not byte-level BPE: the one kind written to GGUF."""
    model_type = (state.get("model") or {}).get("type")
    decoder = (state.get("decoder") or {}).get("type")
    if model_type != "BPE" or decoder != "ByteLevel":
        raise UserError(
            f"writing a {model_type} tokenizer (decoder {decoder}) to GGUF is not supported: only byte-level "
            "BPE (gpt2 style). Export from the model's GGUF instead, whose tokenizer is copied as is"
        )


def _detect_pre(tokenizer, state: dict, tokens, types, merges) -> str:
    """The llama.cpp pre-tokenizer name under which llama.cpp splits text as this tokenizer does."""
    expected = tokenizer(_PROBE_TEXT, add_special_tokens=False)["input_ids"]
    for pre in _pre_candidates(state):
        vocab = GGUFVocab(
            model="gpt2", pre=_BPE_PRES[pre], tokens=tokens, types=types, scores=None, merges=merges, bos_id=None,
            eos_id=None, unk_id=None, pad_id=None, add_bos=False, add_eos=False, add_space_prefix=False,
        )
        if tokenizer_from_vocab(vocab)(_PROBE_TEXT, add_special_tokens=False)["input_ids"] == expected:
            return pre
    raise UserError(
        f"this byte-level BPE tokenizer splits text unlike any pre-tokenizer supported here ({', '.join(_BPE_PRES)}); "
        "export from the model's GGUF instead"
    )


def _pre_candidates(state: dict) -> list[str]:
    """llama.cpp pre-tokenizer names to try, the one the tokenizer's JSON hints at first.

    On a vocabulary without tokens mixing digits and other characters, several give the same ids;
    the hint then picks the name that says what the tokenizer does (digits one by one: smollm).
    """
    pre = state.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    splits_digits = any(
        (step.get("type") == "Digits" and step.get("individual_digits"))
        or (step.get("type") == "Split" and step.get("pattern") == {"Regex": r"\p{N}"})
        for step in steps
    )
    return sorted(_BPE_PRES, key=lambda name: name != ("smollm" if splits_digits else "gpt-2"))


def _adds_bos_eos(tokenizer) -> tuple[bool, bool]:
    """Whether encoding with special tokens puts BOS first / EOS last."""
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a")["input_ids"]
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    add_bos = bos is not None and len(full) > len(plain) and full[0] == bos
    add_eos = eos is not None and len(full) > len(plain) and full[-1] == eos
    return add_bos, add_eos
