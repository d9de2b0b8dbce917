"""A candidate cut measured without rewriting the model: its heads and neurons masked (o_proj refit when
asked), the kept languages' calibration perplexity and text beyond the corpus against the search's
baseline (`within_tolerance`). `Cuts` is what a selection decides; `plan` and `iterative` search with
`probe`."""

import math
from contextlib import contextmanager
from dataclasses import dataclass

from ..data.corpus import calibration_ids, encode
from ..data.evaluate import Chunk, score_chunks, torch_scorer
from ..model.parts import HEADS, NEURONS, Selection, mask_from_drop, mask_from_keep

# FFN widths move in steps of this many neurons (llama.cpp quantizes rows in blocks of 32; a
# uniform step of 64 is fine enough for a tolerance search, at ~3% of Gemma's 2048 a step)
FFN_STEP = {"uniform": 64, "free": 32}
OUTSIDE_TOKENS = 256  # a TOL probe's tokens of each kept language's selection sample beyond the corpus, per source


@dataclass
class Cuts:
    """What goes: heads, FFN neurons, vocabulary (None: that part is untouched)."""

    heads: Selection | None = None
    neurons: Selection | None = None
    tokens: list[int] | None = None  # kept token ids of the original vocabulary
    vocab: object = None  # the trimmed vocabulary (tokenizer.GGUFVocab) when tokens are kept
    token_parts: dict | None = None  # kept tokens by the step that chose them (vocab.PARTS)
    search: dict | None = None  # the tolerance search: baseline and every probe
    heal: dict | None = None  # the recovery's figures (cuts/heal.py), once `apply_cuts` ran it


def probe(cuts: Cuts, trial: Cuts, measure, **what) -> bool:
    """Measure `trial` (the cuts so far plus a candidate); whether every kept language stays within
    TOL of the baseline. Each probe is recorded in the search's trail."""
    ppl = measure(trial)
    ok = within_tolerance(cuts.search, ppl)
    cuts.search["probes"].append({**what, "perplexity": ppl, "within_tolerance": ok})
    return ok


def within_tolerance(search: dict, ppl: dict[str, float]) -> bool:
    """Whether every kept language's calibration perplexity stays within TOL of its baseline, and its text
    beyond the corpus (keys "<lang> <source>") within the bits-per-byte limit: a cut of heads or neurons
    keeps the tokens, so bits per byte rise as the log of the perplexity does."""
    outside = set(search.get("outside", []))

    def within(key: str, base: float) -> bool:
        if key in outside:
            return math.log(ppl[key]) <= math.log(base) * (1 + search["outside_bpb_rise"])
        return ppl[key] <= base * (1 + search["tol"])

    return all(within(key, base) for key, base in search["baseline"].items())


def tolerance_perplexity(model, chunks: dict[str, list[list[int]]], grams=None):
    """measure(cuts) -> {key: perplexity} of `chunks` (the `tolerance_chunks`) with the cuts' heads and neurons
    masked (and o_proj refit to the kept heads when `grams` are given, as `rewrite` will).

    The refit's fit saw the calibration tokens too (with every other language's); the report's quality
    figures come from the evaluation split and the report's sample beyond the corpus, which neither saw."""

    def measure(cuts: Cuts) -> dict[str, float]:
        with masked_cuts(model, cuts, grams):
            return perplexities(model, chunks)

    return measure


def tolerance_chunks(tokenizer, corpus, langs: list[str]) -> dict[str, list[list[int]]]:
    """What a TOL probe measures: the `calibration_chunks`, and the first OUTSIDE_TOKENS tokens of each kept
    language's selection sample beyond the corpus per source, keyed "<lang> <source>"."""
    chunks = calibration_chunks(tokenizer, corpus, langs)
    for lang, source, docs in outside_selection(langs):
        chunks[f"{lang} {source}"] = [encode(tokenizer, "\n\n".join(docs))[:OUTSIDE_TOKENS]]
    return chunks


def calibration_chunks(tokenizer, corpus, langs: list[str], n_tokens: int = 1024) -> dict[str, list[list[int]]]:
    """Each kept language's first `n_tokens` calibration tokens, in chunks of 512."""
    return {lang: calibration_ids(tokenizer, corpus, lang, n_tokens, 512) for lang in langs}


def perplexities(model, chunks: dict[str, list[list[int]]]) -> dict[str, float]:
    return {lang: score_chunks(torch_scorer(model), [Chunk(ids, 1) for ids in c]).perplexity
            for lang, c in chunks.items()}


def cut_masks(model, cuts: Cuts) -> dict:
    """{HEADS: per-layer 0/1 mask, NEURONS: ...}: the cuts' heads and neurons as masks."""
    drop = cuts.heads.drop if cuts.heads else []
    keep = cuts.neurons.keep if cuts.neurons else [list(range(w)) for w in NEURONS.sizes(model)]
    return {HEADS: mask_from_drop(HEADS.sizes(model), drop), NEURONS: mask_from_keep(NEURONS.sizes(model), keep)}


@contextmanager
def masked_cuts(model, cuts: Cuts, grams=None, masks: dict | None = None):
    """The model as `cuts` leave it, without rewriting it: their heads and neurons masked (by `masks` when given,
    e.g. requires-grad ones), o_proj refit to the kept heads when `grams` are given."""
    from .refit import refitted

    masks = masks or cut_masks(model, cuts)
    with refitted(model, HEADS, cuts.heads.drop if cuts.heads else [], grams), HEADS.masked(model, masks[HEADS]), \
            NEURONS.masked(model, masks[NEURONS]):
        yield


def outside_selection(langs: list[str]) -> list[tuple[str, str, list[str]]]:
    """(language, source, documents) of each kept language's "selection" sample beyond the corpus, which the
    report's sample never holds."""
    from ..data.outside_text import outside_corpora

    return [(lang, source, corpus.texts[lang]["selection"])
            for source, corpus in outside_corpora(langs).items() for lang in corpus.languages]
