"""The refit: least squares that moves what dropped units carried (heads into o_proj, FFN neurons into
down_proj) into the kept units' columns."""

import copy

import numpy as np
import pytest
import torch

from langprune.cuts.refit import part_grams, refit, refit_columns, refitted
from langprune.cuts.rewrite import keep_from_drop
from langprune.model.parts import HEADS, NEURONS, mask_from_drop
from tests.test_rewrite import DROP, FAMILIES, max_diff
from tests.tiny import tiny_model


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


NEURON_DROP = [(layer, n) for layer in range(3) for n in range(layer, 96, 4)]  # a quarter of each layer's 96


def _logits(model, ids, part=HEADS, drop=()):
    with torch.no_grad(), part.masked(model, mask_from_drop(part.sizes(model), drop)):
        return model(ids).logits


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("part, drop", [(HEADS, DROP), (NEURONS, NEURON_DROP)], ids=["heads", "neurons"])
def test_refit_brings_the_pruned_model_closer_to_the_original(family, part, drop):
    model = tiny_model(family)
    if part is NEURONS:  # a random FFN's neurons are nearly independent: make the dropped ones half-predictable
        for layer, n in drop:
            mlp = model.model.layers[layer].mlp
            mlp.gate_proj.weight.data[n] = mlp.gate_proj.weight.data[n + 1]
            mlp.up_proj.weight.data[n] = 2 * mlp.up_proj.weight.data[n + 1] + 0.5 * mlp.up_proj.weight.data[n]
    calibration, held_out = torch.randint(0, 320, (16, 32)), torch.randint(0, 320, (4, 32))
    grams = part_grams(model, calibration.tolist(), (part,))[part]
    original, masked = _logits(model, held_out), _logits(model, held_out, part, drop)
    with refitted(model, part, drop, grams):
        refitted_logits = _logits(model, held_out, part, drop)
    error = lambda logits: float((logits - original).pow(2).mean())  # noqa: E731
    assert error(refitted_logits) < 0.8 * error(masked)
    assert max_diff([_logits(model, held_out, part, drop)], [masked]) == 0  # the block restored the weights

    pruned = copy.deepcopy(model)
    refit(pruned, part, drop, grams)
    part.prune(pruned, keep_from_drop(part.sizes(model), drop))
    assert max_diff([_logits(pruned, held_out)], [refitted_logits]) <= 1e-4  # refit, then prune: the same model


def test_one_pass_collects_both_parts_grams():
    """Heads' and neurons' grams from one pass equal each part's alone."""
    model, chunks = tiny_model("llama"), torch.randint(0, 320, (4, 24)).tolist()
    both = part_grams(model, chunks, (HEADS, NEURONS))
    for part in (HEADS, NEURONS):
        alone = part_grams(model, chunks, (part,))[part]
        assert [g.shape[0] for g in alone] == [64 if part is HEADS else 96] * 3
        assert all(torch.equal(a, b) for a, b in zip(both[part], alone))


@pytest.mark.real
def test_refit_recovers_most_of_a_cut_on_gemma(gemma):
    """One head per layer (18 of 72: the least a uniform GGUF can drop); losses on the evaluation
    split, which the refit never sees."""
    from langprune.analysis.masking import language_losses
    from langprune.cuts.refit import refit_grams
    from langprune.data.corpus import encode, load_corpus

    model, tokenizer = gemma.model, gemma.tokenizer
    corpus = load_corpus(["en", "de", "fr", "ru", "zh"], None)
    grams = refit_grams(model, tokenizer, corpus, corpus.languages)[HEADS]
    held_out = {lang: encode(tokenizer, corpus.text(lang, "evaluation"))[:257] for lang in corpus.languages}
    drop = [(layer, (layer * 3) % 4) for layer in range(18)]
    base, masked = language_losses(model, held_out), language_losses(model, held_out, drop)
    with refitted(model, HEADS, drop, grams):
        refitted_losses = language_losses(model, held_out, drop)
    for lang in corpus.languages:  # measured: the refit leaves 21-37% of the masked rise
        assert masked[lang] - base[lang] > 0.2, lang  # the cut does hurt
        assert refitted_losses[lang] - base[lang] < 0.5 * (masked[lang] - base[lang]), lang


def test_one_calibration_pass_gives_the_same_statistics_and_grams(tmp_path, monkeypatch):
    """`pipeline.run_calibration`: neuron statistics and refit grams from one shared forward pass
    equal each computed on its own (and the grams alone, with the statistics cached)."""
    from langprune.analysis.neurons import neuron_stats
    from langprune.cuts.refit import CHUNK_TOKENS, refit_grams
    from langprune.data.corpus import load_corpus
    from langprune.model.load import load
    from langprune.options import NEURON_TOKENS, Context, ExportOptions
    from langprune.pipeline import run_calibration
    from langprune.preflight import check_options
    from tests.tiny import save_tiny

    options = ExportOptions(langs=["en", "de"], model=str(save_tiny("llama", tmp_path / "llama")),
                            analysis_langs=["en", "de", "fr"])
    _, layout = check_options(options)
    loaded = load(options.model)
    ctx = Context(options, loaded, load_corpus(["en", "de", "fr"]), layout)
    langs, model, tokenizer = ["de", "en", "fr"], loaded.model, loaded.tokenizer  # sorted, as the pipeline keys them
    monkeypatch.setenv("LANGPRUNE_CACHE", str(tmp_path / "cache"))  # the statistics' cache (the corpus is read)

    with monkeypatch.context() as patch:  # a second pass for the grams would fail
        patch.setattr("langprune.cuts.refit.refit_grams", lambda *a, **k: pytest.fail("a second forward pass"))
        stats, grams = run_calibration(ctx, neurons=True, refit=True)
    alone = neuron_stats(model, tokenizer, ctx.corpus, langs, NEURON_TOKENS, CHUNK_TOKENS)
    assert np.array_equal(stats.frequency, alone.frequency) and np.array_equal(stats.contribution, alone.contribution)
    expected = refit_grams(model, tokenizer, ctx.corpus, langs, n_tokens=NEURON_TOKENS)[HEADS]
    assert len(grams) == len(expected) == 3
    assert all(torch.equal(g, e) for g, e in zip(grams, expected))
    assert float(grams[0].diagonal().min()) > 0

    cached_stats, grams_again = run_calibration(ctx, neurons=True, refit=True)  # statistics from cache: grams alone
    assert np.array_equal(cached_stats.frequency, stats.frequency)
    assert all(torch.equal(g, e) for g, e in zip(grams_again, expected))
    assert run_calibration(ctx, neurons=False, refit=True)[0] is None
    assert run_calibration(ctx, neurons=True, refit=False)[1] is None
