"""The o_proj refit: least squares that moves what dropped heads carried into the kept heads' columns."""

import copy

import numpy as np
import pytest
import torch

from tests.test_rewrite import DROP, FAMILIES, max_diff
from tests.tiny import tiny_model
from toolchain.cuts.refit import head_grams, refit_columns, refit_heads, refitted_heads
from toolchain.cuts.rewrite import keep_from_drop
from toolchain.model.parts import HEADS, mask_from_drop


def test_refit_recovers_an_exact_linear_dependence():
    torch.manual_seed(0)
    x_kept = torch.randn(500, 6, dtype=torch.float64)
    mix = torch.randn(2, 6, dtype=torch.float64)
    x = torch.cat([x_kept, x_kept @ mix.T], dim=1)  # the last 2 inputs are linear in the first 6
    weight = torch.randn(4, 8, dtype=torch.float64)
    keep, drop = torch.arange(6), torch.tensor([6, 7])
    refit = refit_columns(weight, x.T @ x / len(x), keep, drop, ridge=1e-9)
    assert float((x_kept @ refit.T - x @ weight.T).abs().max()) < 1e-5
    assert float((x_kept @ weight[:, keep].T - x @ weight.T).abs().max()) > 0.5  # dropping alone loses it


def _logits(model, ids, drop=()):
    with torch.no_grad(), HEADS.masked(model, mask_from_drop(HEADS.sizes(model), drop)):
        return model(ids).logits


@pytest.mark.parametrize("family", FAMILIES)
def test_refit_brings_the_pruned_model_closer_to_the_original(family):
    model = tiny_model(family)
    calibration, held_out = torch.randint(0, 320, (16, 32)), torch.randint(0, 320, (4, 32))
    grams = head_grams(model, calibration.tolist())
    original, masked = _logits(model, held_out), _logits(model, held_out, DROP)
    with refitted_heads(model, DROP, grams):
        refitted = _logits(model, held_out, DROP)
    error = lambda logits: float((logits - original).pow(2).mean())  # noqa: E731
    assert error(refitted) < 0.8 * error(masked)
    assert max_diff([_logits(model, held_out, DROP)], [masked]) == 0  # the block restored the weights

    pruned = copy.deepcopy(model)
    refit_heads(pruned, DROP, grams)
    HEADS.prune(pruned, keep_from_drop(HEADS.sizes(model), DROP))
    assert max_diff([_logits(pruned, held_out)], [refitted]) <= 1e-4  # refit, then prune: the same model


@pytest.mark.real
def test_refit_recovers_most_of_a_cut_on_gemma(gemma):
    """One head per layer (18 of 72: the least a uniform GGUF can drop); losses on the evaluation
    split, which the refit never sees."""
    from toolchain.analysis.analyze import language_losses
    from toolchain.cuts.refit import refit_grams
    from toolchain.data.corpus import load_corpus
    from toolchain.data.corpus import encode

    model, tokenizer = gemma.model, gemma.tokenizer
    corpus = load_corpus(["en", "de", "fr", "ru", "zh"], None)
    grams = refit_grams(model, tokenizer, corpus, corpus.languages)
    held_out = {lang: encode(tokenizer, corpus.text(lang, "evaluation"))[:257] for lang in corpus.languages}
    drop = [(layer, (layer * 3) % 4) for layer in range(18)]
    base, masked = language_losses(model, held_out), language_losses(model, held_out, drop)
    with refitted_heads(model, drop, grams):
        refitted = language_losses(model, held_out, drop)
    for lang in corpus.languages:  # measured: the refit leaves 21-37% of the masked rise
        assert masked[lang] - base[lang] > 0.2, lang  # the cut does hurt
        assert refitted[lang] - base[lang] < 0.5 * (masked[lang] - base[lang]), lang


def test_one_calibration_pass_gives_the_same_statistics_and_grams(tmp_path, monkeypatch):
    """`pipeline.run_calibration`: neuron statistics and refit grams from one shared forward pass
    equal each computed on its own (and the grams alone, with the statistics cached)."""
    from tests.tiny import save_tiny
    from toolchain.analysis.neurons import neuron_stats
    from toolchain.cuts.refit import CHUNK_TOKENS, refit_grams
    from toolchain.data.corpus import load_corpus
    from toolchain.model.load import load
    from toolchain.options import NEURON_TOKENS, Context, ExportOptions, check_options
    from toolchain.pipeline import run_calibration

    options = ExportOptions(langs=["en", "de"], model=str(save_tiny("llama", tmp_path / "llama")), analysis_langs=["en", "de", "fr"])
    _, layout = check_options(options)
    loaded = load(options.model)
    ctx = Context(options, loaded, load_corpus(["en", "de", "fr"]), layout)
    langs, model, tokenizer = ["en", "de", "fr"], loaded.model, loaded.tokenizer
    monkeypatch.setenv("LANGPRUNE_CACHE", str(tmp_path / "cache"))  # the statistics' cache (the corpus is read)

    with monkeypatch.context() as patch:  # a second pass for the grams would fail
        patch.setattr("toolchain.cuts.refit.refit_grams", lambda *a, **k: pytest.fail("a second forward pass"))
        stats, grams = run_calibration(ctx, neurons=True, refit=True)
    alone = neuron_stats(model, tokenizer, ctx.corpus, langs, NEURON_TOKENS, CHUNK_TOKENS)
    assert np.array_equal(stats.frequency, alone.frequency) and np.array_equal(stats.contribution, alone.contribution)
    expected = refit_grams(model, tokenizer, ctx.corpus, langs, n_tokens=NEURON_TOKENS)
    assert len(grams) == len(expected) == 3
    assert all(torch.equal(g, e) for g, e in zip(grams, expected))
    assert float(grams[0].diagonal().min()) > 0

    cached_stats, grams_again = run_calibration(ctx, neurons=True, refit=True)  # statistics from cache: grams alone
    assert np.array_equal(cached_stats.frequency, stats.frequency)
    assert all(torch.equal(g, e) for g, e in zip(grams_again, expected))
    assert run_calibration(ctx, neurons=False, refit=True)[0] is None
    assert run_calibration(ctx, neurons=True, refit=False)[1] is None
