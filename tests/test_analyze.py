"""Analysis on tiny models: exact masking equals naive masking, the candidate output layer is exact to
first order; the scores have the right shapes."""

import numpy as np
import pytest
import torch

from langprune.analysis.analyze import METHODS, Analysis, Settings, activation_frequency, analyze, analyze_cached
from langprune.analysis.losses import CandidateLosses, mean_loss, token_losses
from langprune.analysis.masking import masking_deltas
from langprune.data.corpus import udhr_corpus
from langprune.model.families import FAMILIES
from langprune.model.parts import HEADS, mask_from_drop
from tests.tiny import TINY, tiny_model, tiny_tokenizer


@pytest.mark.parametrize("family", list(FAMILIES))
def test_masking_from_cached_layer_inputs_equals_naive_masking(family):
    model = tiny_model(family)
    torch.manual_seed(1)
    chunks = {"a": torch.randint(1, 320, (20,)).tolist(), "b": torch.randint(1, 320, (13,)).tolist()}
    deltas, base = masking_deltas(model, chunks, output="exact")
    with torch.no_grad():
        for i, (lang, ids) in enumerate(chunks.items()):
            assert base[lang] == pytest.approx(mean_loss(model, ids).item(), abs=1e-5)
            for layer in range(3):
                for head in range(4):
                    with HEADS.masked(model, mask_from_drop([4, 4, 4], [(layer, head)])):
                        naive = mean_loss(model, ids).item() - base[lang]
                    assert deltas[i, layer, head] == pytest.approx(naive, abs=1e-5)
    assert np.abs(deltas).max() > 1e-3


def _final_states(model, n=40):
    torch.manual_seed(2)
    ids = torch.randint(1, 320, (1, n))
    with torch.no_grad():
        return model.model(input_ids=ids, use_cache=False).last_hidden_state[:, :-1], ids[:, 1:]


def test_candidate_losses_are_exact_at_the_base_and_to_first_order_around_it():
    model = tiny_model("llama")
    hidden, targets = _final_states(model)
    exact = lambda h: token_losses(model, h, targets)  # noqa: E731
    with torch.no_grad():
        losses = CandidateLosses(model.get_output_embeddings().weight, hidden, targets, top=8)
        assert 0 < len(losses.union) < TINY["vocab_size"]  # a real tail is left to the first-order term
        assert torch.allclose(losses.base, exact(hidden), atol=1e-5)
        direction = torch.randn_like(hidden) * hidden.norm(dim=-1, keepdim=True) / hidden.shape[-1] ** 0.5
        errors = [(losses(hidden + eps * direction) - exact(hidden + eps * direction)).abs().max().item()
                  for eps in (0.2, 0.1)]
        changes = (exact(hidden + 0.1 * direction) - exact(hidden)).abs().max().item()
    # the error of a first-order tail shrinks with the square of the step
    assert 0 < errors[1] < errors[0] / 3, errors
    assert errors[1] < 0.05 * changes, (errors, changes)


def test_candidate_losses_with_every_token_a_candidate_are_exact():
    model = tiny_model("qwen3")
    hidden, targets = _final_states(model)
    with torch.no_grad():
        losses = CandidateLosses(model.get_output_embeddings().weight, hidden, targets, top=TINY["vocab_size"])
        moved = hidden + torch.randn_like(hidden)
        assert torch.allclose(losses(moved), token_losses(model, moved, targets), atol=1e-4)


def test_candidate_masking_ranks_heads_like_exact_masking():
    model = tiny_model("gemma3")
    torch.manual_seed(1)
    chunks = {"a": torch.randint(1, 320, (30,)).tolist(), "b": torch.randint(1, 320, (30,)).tolist()}
    exact, base = masking_deltas(model, chunks, output="exact")
    approx, approx_base = masking_deltas(model, chunks, output="candidates", top=16)
    assert list(approx_base.values()) == pytest.approx(list(base.values()), abs=1e-5)
    for i in range(2):
        rho = np.corrcoef(np.argsort(np.argsort(exact[i].ravel())), np.argsort(np.argsort(approx[i].ravel())))[0, 1]
        assert rho > 0.9, rho
    assert np.abs(approx - exact).max() < 0.1 * np.abs(exact).max()


def test_activation_frequency_and_entropy():
    rng = np.random.default_rng(0)
    norms = {lang: rng.random((100, 2, 3)) for lang in ("a", "b", "c")}
    norms["a"][:, 0, 0] += 10  # head (0, 0) fires for language a only
    freq, entropy = activation_frequency(norms, quantile=0.9)
    assert freq[0, 0, 0] > 0.25 and freq[1, 0, 0] == 0 and freq[2, 0, 0] == 0
    assert entropy[0, 0] == pytest.approx(0, abs=1e-6)
    assert entropy[1, 1] > 0.9  # a head active evenly across languages


def test_analysis_round_trips_and_normalizes(tmp_path):
    model, tok = tiny_model("llama"), tiny_tokenizer()
    corpus = udhr_corpus(["en", "de", "ru"])
    settings = Settings(("en", "de", "ru"), tokens_per_language=64, masking_tokens=32, chunk_tokens=32)
    analysis = analyze(model, tok, corpus, settings, "tiny")
    for method in METHODS:
        assert analysis.scores[method].shape == (3, 3, 4)
        assert np.abs(analysis.normalized(method)).mean(axis=(1, 2)) == pytest.approx([1, 1, 1])
    assert (analysis.scores["gradient"] > 0).all()
    spec = analysis.specificity()
    assert spec.sum(axis=0) == pytest.approx(np.zeros((3, 4)), abs=1e-9)  # relative to the others
    assert set(analysis.agreement()) == {"masking~gradient", "masking~activation", "gradient~activation"}
    reloaded = Analysis.from_json(__import__("json").loads(analysis.save(tmp_path / "a.json").read_text()))
    assert np.array_equal(reloaded.scores["masking"], analysis.scores["masking"])
    assert reloaded.settings == settings


def test_analysis_is_cached_by_model_corpus_and_settings(tmp_path, monkeypatch):
    model, tok = tiny_model("qwen3"), tiny_tokenizer()
    en_de, en_fr = udhr_corpus(["en", "de"]), udhr_corpus(["en", "fr"])
    monkeypatch.setenv("LANGPRUNE_CACHE", str(tmp_path))  # after the corpus is read from the real cache
    settings = Settings(("en", "de"), tokens_per_language=32, masking_tokens=16, chunk_tokens=32)
    first, cached = analyze_cached(model, tok, en_de, settings, "fp-1")
    assert not cached
    again, cached = analyze_cached(model, tok, en_de, settings, "fp-1")
    assert cached and np.array_equal(again.scores["gradient"], first.scores["gradient"])
    _, cached = analyze_cached(model, tok, en_de, settings, "fp-2")  # another model
    assert not cached
    _, cached = analyze_cached(model, tok, en_fr, Settings(("en", "fr"), 32, 16, 32), "fp-1")
    assert not cached
