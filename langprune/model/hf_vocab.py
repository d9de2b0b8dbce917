"""A byte-level BPE Hugging Face tokenizer as a GGUF vocabulary (`vocab_from_hf_tokenizer`), with the llama.cpp
pre-tokenizer name that splits text as it does: the way back of `tokenizer.tokenizer_from_vocab`."""

from ..errors import UserError
from .tokenizer import CONTROL, NORMAL, UNUSED, USER_DEFINED, GGUFVocab, tokenizer_from_vocab

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
