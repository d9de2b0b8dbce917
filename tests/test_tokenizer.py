"""Our tokenizer built from a GGUF must give llama.cpp's ids, token for token."""

import subprocess
import sys

import pytest

from langprune.data.corpus import udhr_corpus
from langprune.data.languages import LANGUAGES
from langprune.measure.llamacpp import tokenize, vocab_only
from langprune.model.load import load_tokenizer
from langprune.model.recipes import load_recipe
from langprune.model.tokenizer import read_vocab, tokenizer_from_vocab

# 16 languages, 11 scripts: Latin, Cyrillic, Greek, Han, Japanese, Hangul, Arabic, Hebrew,
# Devanagari, Thai, Ethiopic.
LANGS = ["en", "de", "vi", "tr", "ru", "uk", "el", "zh", "ja", "ko", "ar", "fa", "he", "hi", "th", "am"]
# digits: Llama 3 splits them in threes, Qwen2 one by one; contractions: case-insensitive in both
EDGE_CASES = ["", " ", "  two  spaces ", "tabs\t\tand\nnew\n\n\nlines", "<bos> is text here", "emoji 🤖 ok",
              "12345 1234567 I'LL it's", "a\r\n\r\nb   \n c"]

pytestmark = pytest.mark.real


@pytest.fixture(scope="module", params=["gemma3-270m", "smollm2-135m", "qwen2.5-coder-0.5b", "llama-bpe"])
def pair(request, tmp_path_factory):
    """Each recipe's GGUF; `llama-bpe` (Llama 3's pre-tokenizer, no Llama 3 GGUF to hand): Qwen2.5's with its
    `tokenizer.ggml.pre` set to llama-bpe by gguf's own tool, so llama.cpp splits it by Llama 3's regex."""
    if request.param == "llama-bpe":
        path = tmp_path_factory.mktemp("llama-bpe") / "qwen-as-llama-bpe.gguf"
        source = load_recipe("qwen2.5-coder-0.5b").source_path()
        subprocess.run([sys.executable, "-m", "gguf.scripts.gguf_new_metadata", "--pre-tokenizer", "llama-bpe",
                        "--force", str(source), str(path)], check=True, capture_output=True)
    else:
        path = load_recipe(request.param).source_path()
    return tokenizer_from_vocab(read_vocab(path)), vocab_only(path)


def test_languages_cover_the_scripts():
    scripts = {LANGUAGES[code].script for code in LANGS}
    assert {"Latin", "Cyrillic", "Han", "Arabic", "Devanagari"} <= scripts and len(scripts) >= 10


def test_ids_equal_llama_cpp_on_udhr_text(pair):
    ours, llama = pair
    corpus = udhr_corpus(LANGS)
    for lang in LANGS:
        for split in ("calibration", "evaluation"):
            text = corpus.text(lang, split)
            expected = tokenize(llama, text, add_bos=_adds_bos(ours))
            got = ours(text)["input_ids"]
            assert got == expected, f"{lang}/{split}: first difference at {_first_diff(got, expected)}"
            assert len(got) > 100


def test_ids_equal_llama_cpp_on_edge_cases(pair):
    ours, llama = pair
    for text in EDGE_CASES:
        assert ours(text)["input_ids"] == tokenize(llama, text, add_bos=_adds_bos(ours)), repr(text)


def test_decode_round_trips(pair):
    ours, _ = pair
    text = udhr_corpus(["ja"]).text("ja", "evaluation")
    assert ours.decode(ours(text)["input_ids"], skip_special_tokens=True) == text


def _adds_bos(tokenizer) -> bool:
    return tokenizer("")["input_ids"] == [tokenizer.bos_token_id]


def _first_diff(a, b):
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def test_a_saved_tokenizer_loads_back_the_same_and_quietly(pair, tmp_path):
    """Saved and loaded back as every stage loads one: the same ids, and no warning from transformers that its
    regex is "incorrect" (4.57.3+ says so of every local byte-level BPE tokenizer; ours is llama.cpp's)."""
    import logging

    from transformers import Qwen2Config

    ours, _ = pair
    ours.save_pretrained(tmp_path)
    Qwen2Config().save_pretrained(tmp_path)  # a model's folder: transformers looks at its config to decide
    warnings = []
    handler = logging.Handler()
    handler.emit = lambda record: warnings.append(record.getMessage())
    logging.getLogger("transformers").addHandler(handler)
    try:
        again = load_tokenizer(tmp_path)
    finally:
        logging.getLogger("transformers").removeHandler(handler)
    text = udhr_corpus(["de", "zh"]).text("zh", "evaluation") + " 12345 I'LL"
    assert again(text)["input_ids"] == ours(text)["input_ids"]
    assert not [w for w in warnings if "regex" in w], warnings
