"""The dequantized PyTorch model agrees with llama.cpp on the same GGUF."""

import pytest

from langprune.data.corpus import udhr_corpus
from langprune.data.evaluate import score_languages, torch_scorer
from langprune.measure.llamacpp import llama_scorer, open_gguf

LANGS = ["en", "de", "fr", "ru", "zh", "ja", "ar", "hi"]

pytestmark = pytest.mark.real


def test_perplexity_matches_llama_cpp(gemma):
    corpus = udhr_corpus(LANGS)
    ours = score_languages(torch_scorer(gemma.model), gemma.tokenizer, corpus, "evaluation")
    theirs = score_languages(llama_scorer(open_gguf(gemma.source)), gemma.tokenizer, corpus, "evaluation")
    gaps = {lang: ours[lang].perplexity / theirs[lang].perplexity - 1 for lang in LANGS}
    print({lang: f"{ours[lang].perplexity:.2f} vs {theirs[lang].perplexity:.2f}" for lang in LANGS})
    assert all(ours[lang].tokens == theirs[lang].tokens > 200 for lang in LANGS)
    assert sum(abs(gap) <= 0.03 for gap in gaps.values()) >= 6, gaps
    assert all(abs(gap) <= 0.06 for gap in gaps.values()), gaps
    # a model that learned these languages: far below a uniform guess over 262k tokens
    assert all(1 < ours[lang].perplexity < 200 for lang in LANGS)
