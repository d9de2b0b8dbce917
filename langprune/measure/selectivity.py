"""How language-specific the head selection is (`make bench-selection`).

For a few budgets, the heads `select` would drop for the kept languages are masked in the
original model, and so are the same number of heads drawn at random; each language's loss rise on
the evaluation split (which the analysis never sees) shows whom the cut hurts. A language-aware
selection hurts the dropped languages more than the kept ones, and the kept ones less than random.
With `grams`, each cut is measured a second time with o_proj refit to the kept heads (`refit`).
"""


import numpy as np

from ..analysis.analyze import Analysis
from ..analysis.masking import language_losses
from ..cuts.refit import refitted
from ..cuts.select import drop_costs, random_selection, select_heads
from ..data.corpus import Corpus, encode
from ..log import progress
from ..model.heads import kv_head_counts
from ..model.parts import HEADS

LAYOUT = "free"  # any count per layer: the comparison runs in PyTorch, not in a GGUF graph


def selectivity(model, tokenizer, corpus: Corpus, analysis: Analysis, keep: list[str], budgets: list[int],
                grams=None, draws: int = 3, tokens: int = 257) -> dict:
    """{"base": {lang: loss}, "runs": [{"heads", "selection", "rise": {lang: nats}}]}."""
    held = {lang: encode(tokenizer, corpus.text(lang, "evaluation"))[:tokens] for lang in analysis.languages}
    base = language_losses(model, held)
    costs, n_heads, n_kv = drop_costs(analysis, keep), HEADS.sizes(model)[0], kv_head_counts(model)[0]
    picks = []
    for n in budgets:
        picks.append((n, "selected", select_heads(costs, n_kv, n, LAYOUT).drop))
        for seed in range(draws):
            picks.append((n, f"random {seed}", random_selection(len(costs), n_heads, n_kv, n, LAYOUT, seed).drop))
    cuts = [(n, name, drop, refit) for n, name, drop in picks for refit in ((False, True) if grams else (False,))]
    runs = []
    for n, name, drop, refit in progress(cuts, desc="selected and random heads", unit="cut"):
        with refitted(model, HEADS, drop, grams if refit else None):
            loss = language_losses(model, held, drop)
        runs.append({"heads": n, "selection": name + (" + refit" if refit else ""),
                     "rise": {lang: loss[lang] - base[lang] for lang in held}})
    return {"base": base, "runs": runs, "kept": keep}


def mean_rise(run: dict, langs: list[str]) -> float:
    return float(np.mean([run["rise"][lang] for lang in langs]))
