"""SEARCH=iterative (cuts/iterative.py): heads and FFN neurons cut a step at a time, re-scored on the model as cut
so far, by a fraction or within TOL."""

import copy

import pytest
import torch

from langprune.analysis.neurons import select_neurons
from langprune.cuts import iterative, plan
from langprune.cuts.iterative import first_order_scores
from langprune.cuts.plan import run_selection
from langprune.cuts.select import budget_heads
from langprune.cuts.tolerance import FFN_STEP, Cuts, masked_cuts, tolerance_chunks, tolerance_perplexity
from langprune.data.corpus import load_corpus
from langprune.errors import UserError
from langprune.model.load import load
from langprune.model.parts import HEADS, NEURONS, Selection
from langprune.options import DEFAULT_QUANTS, DEFAULT_TOL, Context, ExportOptions, cuts_ffn, cuts_heads, quant_files
from langprune.preflight import check_options
from tests.tiny import save_tiny

KEPT = ["en", "de"]


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    return load(str(save_tiny("llama", tmp_path_factory.mktemp("iterative") / "llama")))


def context(loaded, **options) -> Context:
    options = ExportOptions(langs=KEPT, model=str(loaded.source), analysis_langs=KEPT, vocab=False, **options)
    _, layout = check_options(options)
    return Context(options, loaded, load_corpus(KEPT), layout)


def select(ctx: Context):
    """`run_selection` as the export runs it, with neither a head analysis nor neuron statistics."""
    return run_selection(ctx.loaded, ctx.corpus, ctx.options, ctx.layout, None, None)


def tolerance_measure(ctx: Context):
    return tolerance_perplexity(ctx.loaded.model, tolerance_chunks(ctx.loaded.tokenizer, ctx.corpus, ctx.options.langs))


def test_first_order_scores_sum_each_units_mask_slopes_over_positions_and_are_zero_once_dropped(tiny_llama):
    """A kept unit's score is the sum over positions of |the slope of the chunk's summed loss as the unit's mask at
    that position moves off 1| (checked by central differences, on the model as a cut leaves it); a dropped unit
    scores 0."""
    model = copy.deepcopy(tiny_llama.model).double()  # float64: 25 positions' finite differences summed, each precise
    ids = list(range(5, 30))
    cuts = Cuts(heads=Selection([[0, 1, 2, 3], [0, 2], [0, 1, 2, 3]], [4] * 3, "free"),
                neurons=Selection([list(range(64)), list(range(96)), list(range(32, 96))], [96] * 3, "free"))
    scores = first_order_scores(model, {"en": [ids]}, cuts)
    assert scores[HEADS][1, 1] == scores[HEADS][1, 3] == 0 and (scores[NEURONS][0][64:] == 0).all()
    assert scores[HEADS][1, 0] > 0 and (scores[NEURONS][1] > 0).sum() > 90

    def loss_at(part, layer, unit, position, value):
        def scale(at, x):
            if at == layer:
                x = x.clone()
                x[:, position, unit] *= value
                return x

        with torch.no_grad(), masked_cuts(model, cuts), part.hooked(model, scale):
            logits = model(torch.tensor([ids])).logits[0, :-1]  # float64 here, unlike mean_loss's
            return float(torch.nn.functional.cross_entropy(logits, torch.tensor(ids[1:]), reduction="sum"))

    h = 1e-2
    for part, layer, unit in ((HEADS, 1, 0), (HEADS, 2, 3), (NEURONS, 1, 7), (NEURONS, 2, 40)):
        slopes = [(loss_at(part, layer, unit, t, 1 + h) - loss_at(part, layer, unit, t, 1 - h)) / (2 * h)
                  for t in range(len(ids))]
        score = scores[HEADS][layer, unit] if part is HEADS else scores[NEURONS][layer][unit]
        assert score == pytest.approx(sum(map(abs, slopes)), rel=0.05, abs=1e-4), (part.unit, layer, unit)
        assert score > abs(sum(slopes)) * 1.05  # not the chunk's slope: signs across positions do not cancel


@pytest.mark.parametrize("layout", ["free", "uniform"])
def test_a_fraction_is_reached_a_step_at_a_time_without_measuring(tiny_llama, layout, monkeypatch):
    """HEADS and FFN fractions give the sizes SEARCH=once gives; each round re-scores the model as the rounds before
    left it; nothing is measured."""
    ctx = context(tiny_llama, heads=0.5, ffn=1 / 3, layout=layout, search="iterative")
    scored = []
    score = iterative.first_order_scores
    monkeypatch.setattr(iterative, "first_order_scores", lambda model, chunks, cuts, grams=None:
                        scored.append(cuts) or score(model, chunks, cuts, grams))
    monkeypatch.setattr(plan, "tolerance_perplexity", lambda *a: lambda cuts: pytest.fail("measured"))
    cuts = select(ctx)
    heads = budget_heads(0.5, 3, 4, layout)
    assert len(cuts.heads.drop) == heads and cuts.neurons.per_layer == select_neurons(
        [torch.rand(96).numpy()] * 3, 1 / 3, layout, FFN_STEP[layout]).per_layer
    dropped = [len(c.heads.drop) if c.heads else 0 for c in scored]
    if layout == "free":  # per layer 0, 2 or 3 of 4 heads (2 KV groups): totals 2, 3, 4, 5, 6, a round each
        assert dropped == [0, 2, 3, 4, 5]
    else:  # every layer 0, 2 or 3 of 4: HEADS=0.5 is the layout's first step, one round
        assert dropped == [0]
    assert cuts.search is None


def test_tol_accepts_steps_while_every_kept_language_stays_within_it(tiny_llama):
    """Each round measures each part's next step on top of what was accepted; the accepted steps are the cuts,
    every one within TOL; the search ends at a round where no step passes."""
    ctx = context(tiny_llama, tol=0.002, layout="free", search="iterative")
    cuts = select(ctx)
    search = cuts.search
    assert search["mode"] == "iterative" and search["rounds"] == len(search["accepted"]) >= 1
    probes = search["probes"]
    last = max(p["round"] for p in probes)
    assert last == search["rounds"] and not any(p["within_tolerance"] for p in probes if p["round"] == last)
    for step in search["accepted"]:
        probe = next(p for p in probes if p["round"] == step["round"] and p["cut"] == step["cut"])
        assert probe["within_tolerance"] and probe["size"] == step["size"]
    measured = tolerance_measure(ctx)(cuts)
    for lang in ctx.options.langs:  # calibration perplexity (text beyond the corpus: bits per byte, its own limit)
        assert measured[lang] <= search["baseline"][lang] * 1.002
    heads = [s["size"] for s in search["accepted"] if s["cut"] == "heads"]
    assert heads == sorted(heads) and len(cuts.heads.drop if cuts.heads else []) == (heads[-1] if heads else 0)


def test_the_search_stops_when_its_time_is_spent(tiny_llama, monkeypatch):
    monkeypatch.setattr(iterative, "SEARCH_SECONDS", 0)
    cuts = select(context(tiny_llama, tol=0.5, layout="free", search="iterative"))
    assert cuts.search["rounds"] == 1 and len(cuts.search["accepted"]) == 1


def test_search_option_is_checked(tiny_llama):
    with pytest.raises(UserError, match="--search greedy: choose once or iterative"):
        context(tiny_llama, search="greedy")


def test_an_iterative_export_reports_its_rounds(tmp_path, monkeypatch):
    """`make export TOL=... SEARCH=iterative`: no head analysis or neuron statistics are computed; the export's
    structure is what the accepted steps say, and the report shows the rounds."""
    import json

    from langprune.pipeline import run_export

    monkeypatch.setenv("LANGPRUNE_EXPORTS", str(tmp_path / "exported"))
    monkeypatch.setattr("langprune.pipeline.run_analysis", lambda ctx: pytest.fail("analysed"))
    options = ExportOptions(langs=KEPT, model=str(save_tiny("llama", tmp_path / "llama")), tol=0.01, layout="free",
                            search="iterative", reps=1, analysis_langs=KEPT + ["fr"], quant=["Q4_K_M"])
    folder = run_export(options)
    report, text = json.loads((folder / "report.json").read_text()), (folder / "report.md").read_text()
    search, after = report["tolerance_search"], report["structure"]["after"]
    assert search["mode"] == "iterative" and report["analysis"] is None and not (folder / "heatmap.png").exists()
    accepted = {step["cut"]: step["size"] for step in search["accepted"]}  # the last accepted size of each part
    dropped_heads = sum(report["structure"]["before"]["heads_per_layer"]) - sum(after["heads_per_layer"])
    assert dropped_heads == accepted.get("heads", 0)
    assert f"{search['rounds']} rounds" in text and "| round |" in text


def test_the_default_searches_the_ffn_within_tol_and_keeps_every_head(tiny_llama):
    """With none of HEADS, FFN, TOL given, TOL=0.05 sizes the FFN alone; a TOL given searches heads on top (the real
    default export: tests/test_export_e2e.py)."""
    default = context(tiny_llama)
    assert (default.options.tol, default.options.heads) == (DEFAULT_TOL, 0.0)
    assert cuts_ffn(default.options) and not cuts_heads(default.options)  # the pipeline then runs no head analysis
    asked = context(tiny_llama, tol=DEFAULT_TOL)
    assert cuts_heads(asked.options) and cuts_ffn(asked.options)


def test_quant_kinds_are_taken_in_any_case_as_language_codes_are(tiny_llama):
    """`--quant q6_k,INT4` names the same files as Q6_K,int4; a kind that is no kind is still refused. auto (the
    default) chooses among the file types given with it, or Q8_0 and Q4_K_M where none is."""
    assert context(tiny_llama, quant=["q6_k", "INT4", "iq4_nl"]).options.quant == ["Q6_K", "int4", "IQ4_NL"]
    with pytest.raises(UserError, match="--quant q2_k: choose auto"):
        context(tiny_llama, quant=["q2_k"])
    assert quant_files(context(tiny_llama).options) == ["Q8_0", "Q4_K_M"] == list(DEFAULT_QUANTS)
    assert quant_files(context(tiny_llama, quant=["int8", "AUTO"]).options) == ["Q8_0", "Q4_K_M", "int8"]
    assert quant_files(context(tiny_llama, quant=["Auto", "q4_0"]).options) == ["Q4_0"]
