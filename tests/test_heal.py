"""Recovery by distillation (`HEAL=<minutes>`): the pruned model moves toward the original on the
text it trained on and on text it never saw, and only the parameters a CPU can afford change."""

import copy

import pytest
import torch

from langprune.cuts.heal import TRAINED, coarse_kl, distillation_text, heal
from langprune.cuts.rewrite import keep_from_drop
from langprune.data.corpus import calibration_ids, udhr_corpus
from langprune.model.parts import HEADS
from tests.test_rewrite import DROP, FAMILIES
from tests.tiny import tiny_model, tiny_tokenizer


def test_coarse_kl_is_exact_when_the_top_covers_the_vocabulary_and_zero_at_the_teacher():
    torch.manual_seed(0)
    log_q, log_p = torch.log_softmax(torch.randn(5, 7), -1), torch.log_softmax(torch.randn(5, 7), -1)
    values, top = log_q.topk(7, -1)
    exact = (log_q.exp() * (log_q - log_p)).sum(-1).mean()
    assert float(coarse_kl(log_p, top, values)) == pytest.approx(float(exact), abs=1e-5)
    values, top = log_q.topk(3, -1)
    assert 0 < float(coarse_kl(log_p, top, values)) < float(exact)  # coarser: a lower bound, still positive
    assert float(coarse_kl(log_q, top, values)) == pytest.approx(0, abs=1e-6)


@pytest.mark.parametrize("family", FAMILIES)
def test_heal_moves_the_pruned_model_toward_the_original(family):
    teacher, tokenizer, corpus = tiny_model(family), tiny_tokenizer(), udhr_corpus(["en", "de"])
    student = copy.deepcopy(teacher)
    HEADS.prune(student, keep_from_drop(HEADS.sizes(student), DROP))
    before = {n: p.detach().clone() for n, p in student.named_parameters()}
    text = calibration_ids(tokenizer, corpus, "en", 512, 128)
    held_out = calibration_ids(tokenizer, corpus, "de", 512, 128)
    tokens = sorted({t for ids in text + held_out for t in ids})  # a trimmed vocabulary: the tokens the text uses

    def kl(ids):  # full KL over the kept tokens, what the coarse one approximates
        with torch.no_grad():
            w = teacher.get_output_embeddings().weight[tokens]
            log_q, log_p = (torch.log_softmax(m.get_decoder()(torch.tensor([ids])).last_hidden_state[0] @ w.T, -1)
                            for m in (teacher, student))
            return float((log_q.exp() * (log_q - log_p)).sum(-1).mean())

    seen_before, unseen_before = sum(map(kl, text)), sum(map(kl, held_out))
    result = heal(student, teacher, text, minutes=0.05, tokens=tokens, lr=1e-3)
    assert result["steps"] >= 1 and result["tokens"] == sum(map(len, text))
    assert sum(map(kl, text)) < 0.8 * seen_before
    assert sum(map(kl, held_out)) < unseen_before  # another language's text, never trained on
    changed = {n for n, p in student.named_parameters() if not torch.equal(p, before[n])}
    assert changed and all(n.endswith(TRAINED) for n in changed)
    projections = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert {n.split(".")[-2] for n in changed} >= projections
    assert not any("embed" in n for n in changed)
    assert all(p.requires_grad for p in student.parameters())  # as before the training


def test_distillation_text_holds_the_calibration_split_and_samples_from_it():
    teacher, tokenizer, corpus = tiny_model("llama"), tiny_tokenizer(), udhr_corpus(["en", "de"])
    text = distillation_text(teacher, tokenizer, corpus, ["en", "de"])
    calibration = [ids for lang in ("en", "de") for ids in calibration_ids(tokenizer, corpus, lang, 10**9, 256)]
    assert text[: len(calibration)] == calibration
    sampled = text[len(calibration):]
    assert len(sampled) == 16 and all(len(ids) == 16 + 256 for ids in sampled)
    assert len({tuple(ids[16:]) for ids in sampled}) == 16  # sampled, not greedy
    assert distillation_text(teacher, tokenizer, corpus, ["en", "de"]) == text  # seeded


@pytest.mark.parametrize("broken", [False, True])
def test_a_distillation_that_leaves_tol_is_undone(tmp_path, monkeypatch, broken):
    """`plan.healed`: the calibration perplexity before and after; with TOL, the search's check after it, and a
    distillation that breaks it (one that scales the trained weights by -30) gives the cut's own weights back."""
    from langprune.cuts import heal as heal_module
    from langprune.cuts.plan import healed
    from langprune.cuts.tolerance import Cuts, tolerance_chunks, tolerance_perplexity
    from langprune.data.corpus import load_corpus
    from langprune.model.load import load
    from langprune.model.parts import Selection
    from langprune.options import ExportOptions
    from langprune.preflight import check_options
    from tests.tiny import save_tiny

    options = ExportOptions(langs=["en", "de"], model=str(save_tiny("llama", tmp_path / "llama")), tol=0.2, heal=0.02,
                            analysis_langs=["en", "de"], vocab=False, layout="free")
    check_options(options)
    loaded = load(options.model)
    corpus = load_corpus(["en", "de"])
    measure = tolerance_perplexity(loaded.model, tolerance_chunks(loaded.tokenizer, corpus, options.langs))
    cuts = Cuts(heads=Selection([[0, 1, 2, 3], [0, 2], [0, 1, 2, 3]], [4] * 3, "free"))
    cuts.search = {"tol": 0.2, "baseline": measure(Cuts()), "probes": []}
    model = copy.deepcopy(loaded.model)
    HEADS.prune(model, cuts.heads.keep)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    if broken:
        def scale_trained(student, *args):
            with torch.no_grad():
                for name, p in student.named_parameters():
                    if name.endswith(TRAINED):
                        p.mul_(-30)
            return {"steps": 1}

        monkeypatch.setattr(heal_module, "heal", scale_trained)
    healed(loaded, corpus, options.langs, options.heal, model, cuts)
    h, baseline = cuts.heal, cuts.search["baseline"]
    assert h["perplexity_before"] == pytest.approx(measure(cuts))  # the pruned model is the masked one
    assert all(h["perplexity_before"][lang] <= baseline[lang] * 1.2 for lang in baseline)
    unchanged = all(torch.equal(p, before[n]) for n, p in model.named_parameters())
    if not broken:  # the real distillation: kept, and it moved the weights
        assert h["kept"] and not unchanged
    else:
        assert not all(h["perplexity_after"][lang] <= baseline[lang] * 1.2 for lang in baseline)
        assert not h["kept"] and unchanged
