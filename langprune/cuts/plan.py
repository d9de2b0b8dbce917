"""Which heads, FFN neurons and tokens go (`run_selection`), and the smaller model that results (`apply_cuts`).
`options` is what the export was asked for (`options.ExportOptions`), `layout` the head and FFN layout.

SEARCH=once (default): FFN neurons first, then heads, each ranked once on the original model, by its
fraction or the largest cut within TOL (`select.search`), measured together with what is already cut:
calibration perplexity within TOL, each kept language's text beyond the corpus within its bits-per-byte
limit (`tolerance.within_tolerance`). SEARCH=iterative: both a step at a time, re-scored after each step
(`iterative.py`). Then the vocabulary.
"""

import copy
from dataclasses import replace

import torch

from ..analysis.analyze import Analysis
from ..errors import UserError
from ..log import warn
from ..model.heads import kv_head_counts
from ..model.load import LoadedModel
from ..model.parts import HEADS, NEURONS, Selection
from ..options import QUALITY_LIMITS
from ..timing import timed
from .select import budget_heads, candidate_budgets, drop_costs, search, select_heads
from .tolerance import (
    FFN_STEP,
    Cuts,
    perplexities,
    probe,
    tolerance_chunks,
    tolerance_perplexity,
    within_tolerance,
)
from .vocab_size import select_vocab


def run_selection(loaded: LoadedModel, corpus, options, layout: str, analysis: Analysis | None, stats, grams=None,
                  vocab=None, timings: dict | None = None, vocabulary: tuple | None = None) -> Cuts:
    """FFN neurons first, then heads (each by its fraction, or the largest cut within TOL,
    measured together with what is already cut, and refit when `grams` are given), then the
    vocabulary (from `vocab`, its `vocab_evidence`, computed when None; or `vocabulary`, `select_vocab`'s answer
    for these languages and options.vocab, which the frontier's levels share). SEARCH=iterative needs
    neither the head `analysis` nor the neuron `stats`: it scores both itself. Each part's time goes into
    `timings`."""
    from ..options import cuts_ffn, cuts_heads

    model, langs, cuts, seconds = loaded.model, options.langs, Cuts(), {} if timings is None else timings
    measure = tolerance_perplexity(model, tolerance_chunks(loaded.tokenizer, corpus, langs), grams)
    if options.tol is not None:
        with timed(seconds, "select: baseline"):
            baseline = measure(cuts)
            cuts.search = {"tol": options.tol, "baseline": baseline, "probes": [],
                           "outside": [key for key in baseline if key not in options.langs],
                           "outside_bpb_rise": QUALITY_LIMITS["outside_bpb_rise"]}
    if options.search == "iterative" and (cuts_heads(options) or cuts_ffn(options)):
        from .iterative import iterative_selection

        with timed(seconds, "select: heads and FFN, iterative"):
            cuts = iterative_selection(model, loaded.tokenizer, corpus, options, layout, cuts, measure, grams,
                                       ffn_fractions(model, layout))
    else:
        if stats is not None:
            with timed(seconds, "select: FFN"):
                cuts.neurons = select_ffn(model, stats, langs, options.ffn, layout, cuts, measure)
        if analysis is not None:
            with timed(seconds, "select: heads"):
                cuts.heads = select_head_cut(model, analysis, langs, options.heads, layout, cuts, measure)
    if options.vocab:
        with timed(seconds, "select: vocabulary"):
            cuts.tokens, cuts.vocab, cuts.token_parts = vocabulary or select_vocab(loaded, corpus, langs,
                                                                                   options.vocab, vocab)
    if not (cuts.heads or cuts.neurons or cuts.tokens):
        raise UserError(f"nothing can go within TOL={options.tol}: every probe raised a kept language's "
                        "perplexity more")
    return cuts


def select_ffn(model, stats, langs: list[str], fraction: float | None, layout: str, cuts: Cuts,
               measure) -> Selection | None:
    """The FFN neurons to drop: `fraction` of them, or (None) the largest cut within TOL."""
    from ..analysis.neurons import neuron_scores, select_neurons

    scores, step = neuron_scores(stats, langs), FFN_STEP[layout]
    return search(lambda f: select_neurons(scores, f, layout, step), fraction, ffn_fractions(model, layout),
                  lambda fraction, sel: probe(cuts, replace(cuts, neurons=sel), measure, cut="ffn", size=fraction))


def ffn_fractions(model, layout: str) -> list[float]:
    """The FFN cuts a TOL search tries: steps of FFN_STEP neurons a layer, up to 75% of the neurons."""
    step, width = FFN_STEP[layout], NEURONS.sizes(model)[0]
    return [k * step / width for k in range(1, (width // step) * 3 // 4)]


def select_head_cut(model, analysis: Analysis, langs: list[str], fraction: float | None, layout: str, cuts: Cuts,
                    measure) -> Selection | None:
    """The heads to drop: `fraction` of them, or (None) the largest cut within TOL."""
    costs = drop_costs(analysis, langs)
    n_kv = kv_head_counts(model)[0]
    fixed = None
    if fraction is not None:
        fixed = budget_heads(fraction, analysis.layers, analysis.heads, layout)
        if fixed == 0:
            raise UserError(f"HEADS={fraction} drops no head with the {layout} layout; raise it")
    budgets = [n for n in candidate_budgets(costs, n_kv, layout) if n > 0] if fixed is None else []
    return search(lambda n_drop: select_heads(costs, n_kv, n_drop, layout), fixed, budgets,
                  lambda n_drop, sel: probe(cuts, replace(cuts, heads=sel), measure, cut="heads", size=n_drop))


def apply_cuts(loaded: LoadedModel, cuts: Cuts, grams=None, heal_minutes: float = 0.0, corpus=None,
               langs: list[str] | None = None):
    """The smaller model and its tokenizer (the original's, or the trimmed vocabulary's);
    o_proj refit to the kept heads when `grams` are given; distilled from the original for `heal_minutes` on the
    kept languages `langs` of `corpus` when those are given (`healed`). The original stays as it was, and the two
    hold one copy of every tensor the cuts leave untouched (`sharing_copy`)."""
    from ..model.tokenizer import tokenizer_from_vocab
    from .refit import refit
    from .trim import trim_embeddings

    model, tokenizer = sharing_copy(loaded.model), loaded.tokenizer
    if cuts.heads:
        if grams:
            own(model, lambda name: name.endswith("o_proj.weight"))  # the refit writes HEADS' consumers in place
            refit(model, HEADS, cuts.heads.drop, grams)
        HEADS.prune(model, cuts.heads.keep)
    if cuts.neurons:
        NEURONS.prune(model, cuts.neurons.keep)
    if heal_minutes:
        healed(loaded, corpus, langs, heal_minutes, model, cuts)
    if cuts.tokens:
        trim_embeddings(model, cuts.tokens)
        tokenizer = tokenizer_from_vocab(cuts.vocab)
    return model, tokenizer


def sharing_copy(model):
    """A copy of `model` that holds the original's own parameters and buffers: the cuts put new, smaller tensors in
    the copy's modules and leave the original's alone, so a cut model costs memory only for what it changed. What
    changes a tensor in place (the refit, HEAL's training) must `own` it first."""
    return copy.deepcopy(model, {id(t): t for t in (*model.parameters(), *model.buffers())})


def own(model, wanted) -> None:
    """Give `model` its own copy of each parameter whose name `wanted` accepts (one it shares with the original)."""
    for name, parameter in list(model.named_parameters()):
        if wanted(name):
            path, _, leaf = name.rpartition(".")
            setattr(model.get_submodule(path), leaf, torch.nn.Parameter(parameter.detach().clone()))


def healed(original: LoadedModel, corpus, langs: list[str], minutes: float, model, cuts: Cuts) -> None:
    """Distil the pruned `model` from the `original` for `minutes`, in place, its figures in `cuts.heal` with the
    calibration perplexity before and after. With TOL, the same check as the search's after it: a distillation
    that leaves a kept language beyond TOL while the cut was within it is undone (the cut's weights return)."""
    from .heal import TRAINED, distillation_text, heal

    own(model, lambda name: name.endswith(TRAINED))  # trained in place; the original is the teacher
    chunks = tolerance_chunks(original.tokenizer, corpus, langs)
    before = perplexities(model, chunks)
    saved = {name: p.detach().clone() for name, p in model.named_parameters()  # to undo it: only with TOL
             if cuts.search and name.endswith(TRAINED)}
    text = distillation_text(original.model, original.tokenizer, corpus, langs)
    cuts.heal = heal(model, original.model, text, minutes, cuts.tokens)
    after = perplexities(model, chunks)
    cuts.heal.update(perplexity_before=before, perplexity_after=after, kept=True)
    if cuts.search:
        if within_tolerance(cuts.search, before) and not within_tolerance(cuts.search, after):
            with torch.no_grad():
                for name, p in model.named_parameters():
                    if name in saved:
                        p.copy_(saved[name])
            cuts.heal["kept"] = False
            warn(f"   warning: after HEAL a kept language's calibration perplexity is beyond TOL={cuts.search['tol']} "
                 f"({_rounded(after)} against {_rounded(cuts.search['baseline'])}): the distillation is undone")


def _rounded(ppl: dict) -> dict:
    return {lang: round(v, 3) for lang, v in ppl.items()}
