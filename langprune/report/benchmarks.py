"""The tables of the analysis's benchmarks: `make bench-masking` (`measure/masking_check.py`) and
`make bench-selection` (`measure/selectivity.py`)."""

import math

import numpy as np

from ..measure.masking_check import TOP
from ..measure.selectivity import mean_rise
from .tables import markdown_table


def render_masking_check(result: dict) -> str:
    """`make bench-masking`'s table: each variant's Spearman / top-TOP overlap per language."""
    variants = list(result["agreement"])
    langs = list(next(iter(result["agreement"].values())))
    rows = [(lang, *(f"{result['agreement'][v][lang]['spearman']:.3f} / {result['agreement'][v][lang]['top8']}"
                      for v in variants)) for lang in langs]
    rows.append(("mean", *(f"{np.mean([a['spearman'] for a in result['agreement'][v].values()]):.3f} / "
                           f"{np.mean([a['top8'] for a in result['agreement'][v].values()]):.1f}" for v in variants)))
    timing = ", ".join(f"{k} {v:.0f}s" for k, v in result["seconds"].items())
    return (f"Masking scores against exact float32 masking: Spearman / top-{TOP} overlap per language.\n"
            f"Time to mask every head: {timing}. This CPU's analysis precision: {result['precision']}.\n\n"
            + markdown_table(["language", *variants], rows))


def render_selectivity(result: dict) -> str:
    """A markdown table: perplexity per language, and the mean loss rise of kept and dropped languages."""
    base, kept = result["base"], result["kept"]
    dropped = [lang for lang in base if lang not in kept]
    langs = kept + dropped
    header = ["heads dropped", "selection", "kept: rise (nats)", "dropped: rise", "dropped / kept"]
    header += [f"{lang} ppl{' (kept)' if lang in kept else ''}" for lang in langs]
    rows = [["0", "original", "", "", "", *(f"{math.exp(base[lang]):.2f}" for lang in langs)]]
    for run in result["runs"]:
        k, d = mean_rise(run, kept), mean_rise(run, dropped)
        rows.append([str(run["heads"]), run["selection"], f"{k:+.3f}", f"{d:+.3f}", f"{d / k:.2f}" if k > 0 else "-",
                     *(f"{math.exp(base[lang] + run['rise'][lang]):.2f}" for lang in langs)])
    return markdown_table(header, rows) + "\n"
