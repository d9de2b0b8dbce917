"""FFN neurons: statistics, selection, and physically pruned == masked, for every family."""

import copy

import numpy as np
import pytest
import torch

from langprune.analysis.neurons import NeuronStats, neuron_scores, neuron_stats_cached, select_neurons
from langprune.data.corpus import Corpus, load_corpus
from langprune.errors import UserError
from langprune.model import families
from langprune.model.parts import NEURONS, mask_from_keep
from tests.test_rewrite import logits_prefill_and_decode, max_diff
from tests.tiny import tiny_model, tiny_tokenizer

FAMILIES = list(families.FAMILIES)


def random_keep(widths, kept_widths, seed=0):
    rng = np.random.default_rng(seed)
    return [sorted(rng.choice(n, k, replace=False).tolist()) for n, k in zip(widths, kept_widths)]


def masked_logits(model, ids, keep):
    with NEURONS.masked(model, mask_from_keep(NEURONS.sizes(model), keep)):
        return logits_prefill_and_decode(model, ids)


@pytest.mark.parametrize("family", FAMILIES)
def test_pruned_equals_masked(family):
    model = tiny_model(family)
    ids = torch.randint(0, 320, (2, 12))
    keep = random_keep([96] * 3, [64, 32, 96])  # a different width in every layer
    masked = masked_logits(model, ids, keep)
    original = logits_prefill_and_decode(model, ids)
    pruned_model = NEURONS.prune(copy.deepcopy(model), keep)
    pruned = logits_prefill_and_decode(pruned_model, ids)

    assert NEURONS.sizes(pruned_model) == [64, 32, 96]
    assert pruned_model.config.kept_neurons == keep
    assert max_diff(pruned, masked) <= 1e-4
    assert max_diff(original, masked) > 1e-3  # the masked neurons did matter
    n_params = sum(p.numel() for p in pruned_model.parameters())
    assert sum(p.numel() for p in model.parameters()) - n_params == (32 + 64) * 3 * 64


def test_hooked_activation_is_the_mlp_intermediate():
    model = tiny_model("gemma3")
    mlp, seen = NEURONS.modules(model)[1], {}
    x = torch.randn(1, 5, 64)
    with torch.no_grad(), NEURONS.hooked(model, lambda layer, h: seen.setdefault(layer, h)):
        mlp(x)
        expected = mlp.act_fn(mlp.gate_proj(x)) * mlp.up_proj(x)
    assert list(seen) == [1] and torch.equal(seen[1][..., 0], expected)  # [..., neurons, 1]


def test_pruned_model_rebuilds_from_its_config(tmp_path):
    """What load_pruned does: a full-width model from config.json, pruned with kept_neurons, takes the weights."""
    from transformers import AutoConfig, AutoModelForCausalLM

    model = NEURONS.prune(tiny_model("llama"), random_keep([96] * 3, [32, 64, 96]))
    model.save_pretrained(tmp_path)
    config = AutoConfig.from_pretrained(tmp_path)
    kept, config.kept_neurons = config.kept_neurons, None
    rebuilt = NEURONS.prune(AutoModelForCausalLM.from_config(config).eval(), kept)
    rebuilt.load_state_dict(model.state_dict())
    ids = torch.randint(0, 320, (1, 10))
    assert rebuilt.config.kept_neurons == model.config.kept_neurons
    assert max_diff(logits_prefill_and_decode(rebuilt, ids), logits_prefill_and_decode(model, ids)) == 0


def test_pruning_twice_records_original_indices():
    model = NEURONS.prune(tiny_model("llama"), [list(range(96)), list(range(32, 96)), list(range(0, 96, 2))])
    NEURONS.prune(model, [[0, 95], [0, 1, 63], [3, 4]])
    assert model.config.kept_neurons == [[0, 95], [32, 33, 95], [6, 8]]
    assert NEURONS.sizes(model) == [2, 3, 2]


def test_invalid_rewrites_are_refused():
    model = tiny_model("llama")
    with pytest.raises(UserError, match="layer 1 would keep no FFN neuron"):
        NEURONS.prune(copy.deepcopy(model), [[0], [], [0]])
    with pytest.raises(ValueError, match="keep lists 2 layers"):
        NEURONS.prune(copy.deepcopy(model), [[0], [0]])
    with pytest.raises(ValueError, match="layer 2: neuron indices out of range"):
        NEURONS.prune(copy.deepcopy(model), [[0], [0], [96]])
    with pytest.raises(ValueError, match="layer 0: neuron indices .* repeated"):
        NEURONS.prune(copy.deepcopy(model), [[1, 1], [0], [0]])
    assert NEURONS.sizes(model) == [96, 96, 96]


# -- selection ----------------------------------------------------------------------------
def test_uniform_selection_drops_each_layers_lowest_scores():
    rng = np.random.default_rng(0)
    scores = [rng.random(2048) * (layer + 1) for layer in range(4)]
    keep = select_neurons(scores, 0.25, "uniform").keep
    assert [len(k) for k in keep] == [1536] * 4
    for s, k in zip(scores, keep):
        assert k == sorted(k)
        assert s[k].min() > np.delete(s, k).max()
    assert [len(k) for k in select_neurons(scores, 0.375, "uniform").keep] == [1280] * 4
    assert [len(k) for k in select_neurons(scores, 0.2, "uniform", multiple=32).keep] == [1632] * 4


def test_free_selection_chooses_widths_from_the_data():
    rng = np.random.default_rng(0)
    # layer 0: a few neurons carry everything (many near-zero ones go); layer 2: all alike
    scores = [rng.pareto(1.0, 512), rng.random(512), 1 + 0.01 * rng.random(512)]
    keep = select_neurons(scores, 0.3, "free").keep
    widths = [len(k) for k in keep]
    assert sum(widths) == 3 * 512 - round(0.3 * 3 * 512 / 32) * 32
    assert all(w % 32 == 0 and w >= 32 for w in widths)
    assert widths[0] < widths[1] < widths[2], widths
    for s, k in zip(scores, keep):
        assert len(k) == len(s) or s[k].min() >= np.delete(s, k).max()
    # odd widths: the first step drops the remainder, so kept widths are multiples of 32
    odd = select_neurons([rng.random(100), rng.random(70)], 0.5, "free").keep
    assert all(len(k) % 32 == 0 and len(k) >= 32 for k in odd)


def test_impossible_fractions_are_refused():
    scores = [np.arange(2048.0)] * 2
    with pytest.raises(UserError, match="drops none.*raise the fraction"):
        select_neurons(scores, 0.05, "uniform")  # 1946 rounds back to 2048
    with pytest.raises(UserError, match="drops none.*raise the fraction"):
        select_neurons([np.arange(96.0)], 0.1, "free")
    with pytest.raises(UserError, match="remove every neuron"):
        select_neurons(scores, 0.95, "uniform")
    with pytest.raises(UserError, match="at most 128 of 192"):
        select_neurons([np.arange(96.0)] * 2, 0.9, "free")
    with pytest.raises(UserError, match="unknown layout"):
        select_neurons(scores, 0.5, "banded")


def test_scores_favour_the_kept_languages():
    contribution = np.ones((3, 1, 4))
    contribution[:, 0, 0] = [5.0, 0.1, 0.1]  # neuron 0 serves language a
    contribution[:, 0, 1] = [0.1, 0.1, 5.0]  # neuron 1 serves language c (not kept)
    stats = NeuronStats(["a", "b", "c"], np.full((3, 1, 4), 0.5), contribution, {"a": 1, "b": 1, "c": 1})
    (score,) = neuron_scores(stats, ["a", "b"])
    assert score.argmax() == 0 and score.argmin() == 1
    assert select_neurons([score], 0.25, "uniform", multiple=1).keep == [[0, 2, 3]]
    with pytest.raises(UserError, match=r"\['xx'\] are not in"):
        neuron_scores(stats, ["a", "xx"])


# -- statistics ---------------------------------------------------------------------------
def test_neuron_stats_on_real_text(tmp_path, monkeypatch):
    model, tokenizer = tiny_model("gemma3"), tiny_tokenizer()
    corpus = load_corpus(["en", "de"])
    monkeypatch.setenv("LANGPRUNE_CACHE", str(tmp_path))  # the statistics' cache (the corpus is read)
    stats, cached = neuron_stats_cached(model, tokenizer, corpus, ["en", "de"], "tiny", n_tokens=150, chunk_tokens=64)
    assert not cached
    assert stats.frequency.shape == stats.contribution.shape == (2, 3, 96)
    assert stats.tokens == {"en": 150, "de": 150}  # BOS (first in each chunk) left out
    assert 0 <= stats.frequency.min() and stats.frequency.max() <= 1 and 0.2 < stats.frequency.mean() < 0.8
    assert (stats.contribution >= 0).all() and stats.contribution.max() > 0
    assert 0 <= stats.entropy.min() and stats.entropy.max() <= 1 + 1e-9

    # hand check of one neuron of layer 1 for German, from the MLP's own input
    from langprune.data.corpus import calibration_ids

    mlp, inputs = NEURONS.modules(model)[1], []
    handle = mlp.register_forward_pre_hook(lambda _m, args: inputs.append(args[0][0, 1:]))
    with torch.no_grad():
        for ids in calibration_ids(tokenizer, corpus, "de", 150, 64):
            model(torch.tensor([ids]))
        handle.remove()
        x = torch.cat(inputs)
        act = mlp.act_fn(mlp.gate_proj(x))[:, 7]
        h = act * mlp.up_proj(x)[:, 7]
        column_norm = mlp.down_proj.weight[:, 7].norm()
    assert len(x) == 150
    assert stats.frequency[1, 1, 7] == pytest.approx(float((act > 0).float().mean()))
    assert stats.contribution[1, 1, 7] == pytest.approx(float(h.abs().mean() * column_norm), rel=1e-5)

    again, cached = neuron_stats_cached(model, tokenizer, corpus, ["en", "de"], "tiny", n_tokens=150, chunk_tokens=64)
    assert cached and np.array_equal(again.frequency, stats.frequency) and again.tokens == stats.tokens


# -- GGUF ---------------------------------------------------------------------------------
def test_per_layer_widths_export_as_deci_and_match_torch(tmp_path):
    from langprune.exporters.export_gguf import export_gguf
    from tests.test_export_gguf import compare, metadata, sharpen, tiny_ids

    model = sharpen(NEURONS.prune(tiny_model("llama"), random_keep([96] * 3, [64, 32, 96])))
    out = export_gguf(model, None, tiny_tokenizer(), tmp_path / "deci.gguf")
    meta = metadata(out)
    assert meta["general.architecture"] == "deci" and meta["deci.feed_forward_length"] == [64, 32, 96]
    gap, logit_diff = compare(out, model, tiny_ids())
    assert abs(gap) < 0.01 and logit_diff < 0.02, (gap, logit_diff)


def test_uniform_width_gemma_exports_as_gemma3_and_matches_torch(tmp_path):
    from langprune.exporters.export_gguf import export_gguf
    from tests.test_export_gguf import compare, metadata, tiny_gemma6, tiny_ids

    model = NEURONS.prune(tiny_gemma6(), random_keep([96] * 6, [64] * 6))
    out = export_gguf(model, None, tiny_tokenizer(), tmp_path / "gemma3.gguf")
    meta = metadata(out)
    assert meta["general.architecture"] == "gemma3" and meta["gemma3.feed_forward_length"] == 64
    gap, logit_diff = compare(out, model, tiny_ids())
    assert abs(gap) < 0.01 and logit_diff < 0.02, (gap, logit_diff)


# -- the real default model ---------------------------------------------------------------
@pytest.mark.real
@pytest.mark.slow
def test_pruned_equals_masked_on_gemma_and_scores_beat_random(gemma):
    from langprune.data.evaluate import score_languages, torch_scorer

    model, tokenizer = gemma.model, gemma.tokenizer
    widths = NEURONS.sizes(model)
    keep = select_neurons([np.random.default_rng(0).random(n) for n in widths], 0.25, "uniform").keep
    ids = tokenizer("Alle Menschen sind frei und gleich an Würde und Rechten geboren.",
                    return_tensors="pt")["input_ids"]
    # in float64: in float32 the two differ by ~1e-4 (of logits ~17), from summing 2048 vs 1536 terms
    twin = copy.deepcopy(model).double()
    masked = masked_logits(twin, ids, keep)
    NEURONS.prune(twin, keep)
    assert NEURONS.sizes(twin) == [1536] * len(widths)
    assert max_diff(logits_prefill_and_decode(twin, ids), masked) <= 1e-6
    assert max_diff(logits_prefill_and_decode(model, ids), masked) > 1e-2  # the masked neurons did matter
    del twin

    corpus = load_corpus(["en", "de"])
    stats, _ = neuron_stats_cached(model, tokenizer, corpus, ["en", "de"], gemma.fingerprint, n_tokens=1024)
    chosen = select_neurons(neuron_scores(stats, ["en", "de"]), 0.25, "uniform").keep
    held_out = Corpus({lang: {"evaluation": corpus.texts[lang]["evaluation"][:3]} for lang in ("en", "de")}, "udhr")
    losses = {}
    for name, kept in (("chosen", chosen), ("random", keep)):
        with NEURONS.masked(model, mask_from_keep(widths, kept)):
            scores = score_languages(torch_scorer(model), tokenizer, held_out, "evaluation")
        losses[name] = {lang: s.nll / s.tokens for lang, s in scores.items()}
    print("\nheld-out loss with 25% of FFN neurons masked:", losses)
    assert all(losses["chosen"][lang] < losses["random"][lang] - 0.1 for lang in ("en", "de")), losses
