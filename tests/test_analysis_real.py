"""The analysis of the real default model means something, on text it never saw."""

import numpy as np
import pytest
import torch

from langprune.analysis.analyze import Settings, analyze_cached, spearman
from langprune.analysis.masking import language_losses, masking_deltas
from langprune.analysis.precision import output_layer_precision
from langprune.data.corpus import calibration_ids, encode, udhr_corpus
from langprune.data.languages import DEFAULT_ANALYSIS

pytestmark = [pytest.mark.real, pytest.mark.slow]
K = 3  # heads masked together
DRAWS = 4  # random draws of K heads


@pytest.fixture(scope="module")
def analysis(gemma):
    """The default analysis (12 languages), computed once and cached like `make export` does."""
    corpus = udhr_corpus(list(DEFAULT_ANALYSIS))
    result, _ = analyze_cached(gemma.model, gemma.tokenizer, corpus, Settings(DEFAULT_ANALYSIS), gemma.fingerprint)
    return result


def test_analysis_covers_every_head_and_language(analysis):
    for method, scores in analysis.scores.items():
        assert scores.shape == (12, 18, 4) and np.isfinite(scores).all(), method
    assert (analysis.scores["gradient"] > 0).all()
    assert 0 <= analysis.entropy.min() and analysis.entropy.max() <= 1
    # the two loss-based methods agree more than chance
    assert analysis.agreement()["masking~gradient"] > 0.2
    print("agreement", analysis.agreement(), "seconds", analysis.seconds)


def test_most_specific_heads_hurt_their_language_most(gemma, analysis):
    """Mask the K heads most specific to a language, on held-out (evaluation) text: its loss must
    rise more than with K random heads, and more than the other languages' losses rise."""
    corpus = udhr_corpus(analysis.languages)
    held_out = {lang: encode(gemma.tokenizer, corpus.text(lang, "evaluation"))[:129] for lang in analysis.languages}
    base = language_losses(gemma.model, held_out)
    rng = np.random.default_rng(0)
    random_rise = {lang: 0.0 for lang in analysis.languages}
    for _ in range(DRAWS):
        heads = [divmod(int(i), 4) for i in rng.choice(72, K, replace=False)]
        for lang, loss in language_losses(gemma.model, held_out, heads).items():
            random_rise[lang] += (loss - base[lang]) / DRAWS
    spec = analysis.specificity()
    passed = {}
    for i, lang in enumerate(analysis.languages):
        heads = [divmod(int(j), 4) for j in np.argsort(-spec[i].ravel())[:K]]
        rise = {other: loss - base[other] for other, loss in language_losses(gemma.model, held_out, heads).items()}
        others = np.mean([r for other, r in rise.items() if other != lang])
        passed[lang] = rise[lang] > random_rise[lang] and rise[lang] > others
        print(f"{lang}: specific {rise[lang]:+.3f}  random {random_rise[lang]:+.3f}  others {others:+.3f}")
    assert sum(passed.values()) >= 9, passed


def test_candidate_output_layer_keeps_the_masking_ranking(gemma):
    """The default masking computes exact logits only for candidate tokens: its deltas must rank the
    heads of early, middle and last layers like every logit in float32 does, per language."""
    corpus = udhr_corpus(list(DEFAULT_ANALYSIS))
    chunks = {lang: calibration_ids(gemma.tokenizer, corpus, lang, 64, 65)[0] for lang in DEFAULT_ANALYSIS}
    layers = (0, 7, 17)  # in layer 7 (hi, head 2) a linear-space tail term once overflowed
    exact, _ = masking_deltas(gemma.model, chunks, output="exact", layers=layers)
    approx, _ = masking_deltas(gemma.model, chunks, output="candidates", top=Settings.candidate_top, layers=layers)
    exact, approx = exact[:, layers].reshape(12, -1), approx[:, layers].reshape(12, -1)
    rho = [spearman(exact[i], approx[i]) for i in range(12)]
    error = np.abs(approx - exact).max()
    print(f"Spearman per language {np.round(rho, 3).tolist()}, max |candidates - exact| = {error:.4f} nats, "
          f"max |delta| = {np.abs(exact).max():.4f}")
    assert np.mean(rho) > 0.97 and min(rho) > 0.9
    assert error < 0.15 * np.abs(exact).max()


def test_bfloat16_output_layer_keeps_the_masking_deltas(gemma):
    """Where this CPU makes bfloat16 the analysis's precision, its deltas must stay those of float32.
    (Elsewhere bfloat16 is up to 200x slower, so this real-model check would take hours; the tiny
    models test the bfloat16 path on every machine.)"""
    if output_layer_precision().dtype != torch.bfloat16:
        pytest.skip(f"this CPU's analysis runs in float32: {output_layer_precision()}")
    corpus = udhr_corpus(list(DEFAULT_ANALYSIS))
    chunks = {lang: calibration_ids(gemma.tokenizer, corpus, lang, 64, 65)[0] for lang in DEFAULT_ANALYSIS}
    layers = range(14, 18)
    exact, _ = masking_deltas(gemma.model, chunks, dtype=torch.float32, layers=layers)
    fast, _ = masking_deltas(gemma.model, chunks, dtype=torch.bfloat16, layers=layers)
    exact, fast = exact[:, 14:].ravel(), fast[:, 14:].ravel()
    error = np.abs(fast - exact).max()
    print(f"max |bf16 - fp32| = {error:.4f} nats, max |delta| = {np.abs(exact).max():.4f}, "
          f"corr = {np.corrcoef(exact, fast)[0, 1]:.4f}")
    assert error < 0.05 * np.abs(exact).max()
    assert np.corrcoef(exact, fast)[0, 1] > 0.99
