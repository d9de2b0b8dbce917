"""Iterative selection (SEARCH=iterative): heads and FFN neurons go a step at a time, every unit left re-scored
on the model as cut so far.

Ranking once (`plan.select_ffn`, `plan.select_head_cut`) scores every unit on the original model and sizes each
part alone. Here each round
1. scores every head and neuron on the model as cut so far (dropped units masked, o_proj refit to the kept heads
   when grams are given): the first-order estimate of the loss a unit's removal costs, per position,
   sum_t |dL/dm_t| for a mask of ones m_t at each position t (one backward pass scores both parts: Michel et al.
   2019 for heads, Molchanov et al. 2019 for neurons), the largest over the kept languages. A dropped unit is
   masked to 0 first, so it scores 0 and goes first;
2. forms each part's next step under the layout: the next head budget the layout allows (`candidate_budgets`),
   FFN_STEP more neurons (uniform: in every layer; free: wherever they cost least);
3. with a fraction (HEADS, FFN), takes that part's step until the fraction is reached; with TOL, measures each
   step with everything accepted so far (`tolerance.within_tolerance`) and accepts, among the steps within it, the one
   that raises the worst perplexity ratio least per multiply-add it saves;
until no step is left or within TOL, or the search has run SEARCH_SECONDS (then the cuts accepted so far stand).

Measured against ranking once (docs/benchmarks.md, "SEARCH=iterative"): it ties on Gemma 3 270M and
gains little on SmolLM2-135M, so SEARCH=once stays the default.
"""

import time
from dataclasses import replace

import numpy as np
import torch

from ..analysis.losses import frozen, mean_loss
from ..data.corpus import calibration_ids
from ..errors import UserError
from ..log import progress, say
from ..model.heads import kv_head_counts
from ..model.parts import HEADS, NEURONS
from .select import budget_heads, candidate_budgets, select_heads
from .tolerance import FFN_STEP, masked_cuts, probe

SEARCH_SECONDS = 600  # a TOL search stops taking steps after this long (a round on Gemma 3 270M: ~40 s)
SCORE_TOKENS = 512  # calibration tokens per kept language for the first-order scores


def iterative_selection(model, tokenizer, corpus, options, layout: str, cuts, measure, grams=None, ffn_fractions=()):
    """`cuts` with heads and/or FFN neurons (as `options` cut them) chosen round by round (module docstring).
    `measure` is the export's calibration perplexity; `ffn_fractions` the FFN sizes the layout allows, ascending."""
    from ..options import cuts_ffn, cuts_heads

    chunks = {lang: calibration_ids(tokenizer, corpus, lang, SCORE_TOKENS, SCORE_TOKENS) for lang in options.langs}
    targets = {}  # part -> the size to reach (None: as far as TOL allows)
    if cuts_heads(options):
        n_layers, n_heads = len(HEADS.sizes(model)), max(HEADS.sizes(model))
        targets[HEADS] = None if options.heads is None else budget_heads(options.heads, n_layers, n_heads, layout)
    if cuts_ffn(options):
        targets[NEURONS] = options.ffn
    sizes = {HEADS: 0, NEURONS: 0.0}  # heads dropped, fraction of neurons dropped
    worst = 1.0  # the worst measured text's perplexity over its baseline (`tolerance.tolerance_chunks`), cuts accepted
    if cuts.search is not None:
        cuts.search.update(mode="iterative", accepted=[])
    start, rounds = time.monotonic(), 0
    with progress(desc="iterative selection", unit="round") as bar:
        while not all(target is not None and sizes[part] >= target for part, target in targets.items()):
            scores = first_order_scores(model, chunks, cuts, grams)
            steps = next_steps(model, layout, scores, sizes, targets, ffn_fractions)
            fixed = [part for part in steps if targets[part] is not None]
            for part in fixed:  # a fraction asked for: its steps need no measurement
                sizes[part], selection = steps.pop(part)
                cuts = replace(cuts, **{FIELDS[part]: selection})
            if steps:  # TOL: the step that costs least per multiply-add, if any is within it
                best = cheapest_passing(model, cuts, steps, measure, worst, rounds)
                if best is None:
                    break
                part, sizes[part], cuts, worst = best
                cuts.search["accepted"].append({"round": rounds, "cut": NAMES[part], "size": sizes[part]})
            elif not fixed:
                break
            rounds += 1
            bar.update(1)
            bar.set_postfix(heads=sizes[HEADS], ffn=f"{sizes[NEURONS]:.3f}")
            if not fixed and time.monotonic() - start > SEARCH_SECONDS:
                say(f"   iterative selection stopped after {rounds} rounds ({SEARCH_SECONDS} s)")
                break
    if cuts.search is not None:
        cuts.search.update(rounds=rounds, seconds=round(time.monotonic() - start, 1))
    return cuts


FIELDS = {HEADS: "heads", NEURONS: "neurons"}  # a part's field in `tolerance.Cuts`
NAMES = {HEADS: "heads", NEURONS: "ffn"}  # a part's name in the search's trail


def next_steps(model, layout: str, scores: dict, sizes: dict, targets: dict, ffn_fractions) -> dict:
    """{part: (its next size, its selection at that size from `scores`)} for every part with a next size."""
    from ..analysis.neurons import select_neurons

    steps = {}
    if HEADS in targets:
        n_kv = kv_head_counts(model)[0]
        n = _next_size(candidate_budgets(scores[HEADS], n_kv, layout), sizes[HEADS], targets[HEADS])
        if n is not None:
            steps[HEADS] = n, select_heads(scores[HEADS], n_kv, n, layout)
    if NEURONS in targets:
        f = _next_size(ffn_fractions, sizes[NEURONS], targets[NEURONS])
        if f is not None:
            steps[NEURONS] = f, select_neurons(scores[NEURONS], f, layout, FFN_STEP[layout])
    return steps


def cheapest_passing(model, cuts, steps: dict, measure, worst: float, round_: int):
    """Measure each step on top of `cuts` (a probe each, in the search's trail); among those within TOL, the one
    whose rise of the worst perplexity ratio (kept languages' calibration and text beyond the corpus) per
    multiply-add saved is lowest, as (part, size, the cuts with it, the new worst ratio); None when no step is
    within TOL."""
    passing = []
    for part, (size, selection) in steps.items():
        trial = replace(cuts, **{FIELDS[part]: selection})
        if probe(cuts, trial, measure, cut=NAMES[part], size=size, round=round_):
            ppl, baseline = cuts.search["probes"][-1]["perplexity"], cuts.search["baseline"]
            ratio = max(ppl[lang] / baseline[lang] for lang in ppl)
            passing.append(((ratio - worst) / saved_macs(model, cuts, trial), part, size, trial, ratio))
    return min(passing, key=lambda p: p[0])[1:] if passing else None


def _next_size(sizes, current, target):
    """The next size after `current` (ascending `sizes`), not beyond `target`; None when there is none."""
    if target is not None:
        return None if current >= target else min([s for s in sizes if current < s < target] + [target])
    return next((s for s in sizes if s > current), None)


def saved_macs(model, cuts, trial) -> int:
    """Multiply-adds a token that `trial` saves over `cuts` in the heads' and neurons' projections (q and o per
    query head, gate, up and down per neuron)."""
    hidden = model.config.hidden_size
    head_dim = HEADS.unit_size(HEADS.modules(model)[0])

    def dropped(selection):
        return 0 if selection is None else len(selection.drop)

    heads = dropped(trial.heads) - dropped(cuts.heads)
    neurons = dropped(trial.neurons) - dropped(cuts.neurons)
    return max(1, heads * 2 * hidden * head_dim + neurons * 3 * hidden)


def first_order_scores(model, chunks: dict[str, list[list[int]]], cuts, grams=None) -> dict:
    """{HEADS: [layer, head], NEURONS: per layer [neuron]}: sum over positions t of |dL/dm_tu|, the first-order
    loss of removing unit u at position t (a mask of ones per position, on the model as `cuts` leave it; L summed
    over the chunk's tokens), over the chunks, the largest over the languages of `chunks`; 0 for a unit already
    dropped (its input is masked to 0 before the ones apply)."""
    per_lang = []
    for lang_chunks in chunks.values():
        totals = None
        for ids in lang_chunks:
            ones = {HEADS: {}, NEURONS: {}}
            with frozen(model), masked_cuts(model, cuts, grams), _ones_per_position(HEADS, model, ones[HEADS]), \
                    _ones_per_position(NEURONS, model, ones[NEURONS]):
                (mean_loss(model, ids) * (len(ids) - 1)).backward()
            chunk = {part: [masks[layer].grad.float().abs().sum((0, 1))[:, 0] for layer in sorted(masks)]
                     for part, masks in ones.items()}
            totals = chunk if totals is None else {p: [a + b for a, b in zip(totals[p], chunk[p])] for p in totals}
        per_lang.append(totals)
    heads = torch.stack([torch.stack(s[HEADS]) for s in per_lang]).amax(0).numpy()
    neurons = [torch.stack([s[NEURONS][layer] for s in per_lang]).amax(0).numpy()
               for layer in range(len(per_lang[0][NEURONS]))]
    if not np.isfinite(heads).all() or not all(np.isfinite(n).all() for n in neurons):
        raise UserError("the first-order scores are not finite: the model's loss did not differentiate cleanly")
    return {HEADS: heads, NEURONS: neurons}


def _ones_per_position(part, model, store: dict):
    """Multiply each layer's units by a requires-grad mask of ones per position, kept in store[layer]."""

    def ones(layer: int, x: torch.Tensor) -> torch.Tensor:  # x: [batch, positions, units, unit_size]
        store[layer] = torch.ones(*x.shape[:-1], 1, dtype=x.dtype, requires_grad=True)
        return x * store[layer]

    return part.hooked(model, ones)
