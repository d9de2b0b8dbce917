"""Which heads, FFN neurons and tokens go (`run_selection`), and the smaller model that results (`apply_cuts`).
`options` is what the export was asked for (`options.ExportOptions`), `layout` the head and FFN layout.

SEARCH=once (default): FFN neurons first, then heads, each ranked once on the original model, by its
fraction or the largest cut within TOL (`select.search`), measured together with what is already cut:
calibration perplexity within TOL, each kept language's text beyond the corpus within its bits-per-byte
limit (`tolerance.within_tolerance`). SEARCH=iterative: both a step at a time, re-scored after each step
(`iterative.py`). Then the vocabulary.
"""

import copy
from dataclasses import dataclass, field, replace

import torch

from ..analysis.analyze import Analysis
from ..data.corpus import encode
from ..data.evaluate import nll_from_logits, torch_scorer
from ..errors import UserError, option
from ..log import say, warn
from ..model.heads import kv_head_counts
from ..model.load import LoadedModel
from ..model.parts import HEADS, NEURONS, Selection
from ..options import QUALITY_LIMITS
from ..timing import timed
from .select import budget_heads, candidate_budgets, drop_costs, search, select_heads
from .tolerance import (
    FFN_STEP,
    Cuts,
    outside_selection,
    perplexities,
    probe,
    tolerance_chunks,
    tolerance_perplexity,
    within_tolerance,
)

VOCAB_GROWTH = 1.25  # VOCAB=auto: each try keeps this many times the tokens of the last (trim_vocab)



def run_selection(loaded: LoadedModel, corpus, options, layout: str, analysis: Analysis | None, stats, grams=None,
                  vocab=None, timings: dict | None = None) -> Cuts:
    """FFN neurons first, then heads (each by its fraction, or the largest cut within TOL,
    measured together with what is already cut, and refit when `grams` are given), then the
    vocabulary (from `vocab`, its `vocab_evidence`, computed when None). SEARCH=iterative needs
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
            cuts.tokens, cuts.vocab, cuts.token_parts = select_vocab(loaded, corpus, langs, options.vocab, vocab)
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


def select_vocab(loaded: LoadedModel, corpus, langs: list[str], vocab: bool | int, evidence=None):
    """(kept token ids, the trimmed vocabulary, how many tokens each step chose); `vocab`: True (auto) or at most
    that many tokens."""
    size = None if vocab is True else vocab
    return trim_vocab(*(evidence or vocab_evidence(loaded, corpus, langs)), corpus, langs, size, loaded.tokenizer,
                      loaded.model)


def vocab_evidence(loaded: LoadedModel, corpus, langs: list[str]):
    """(the source vocabulary, the model's predicted usage of each token on the kept languages' text)."""
    from .vocab import frequent_words, predicted_usage

    for lang in (lang for lang in langs if not frequent_words(lang, 1)):
        warn(f"   warning: wordfreq has no word frequencies for {lang}: its tokens come from the corpus and the "
             "model's own predictions only, and may not hold on other text")
    return source_vocab(loaded), predicted_usage(loaded.model, loaded.tokenizer, corpus, langs)


def trim_vocab(vocab, usage, corpus, langs: list[str], size: int | None, tokenizer=None, model=None):
    """`select_vocab` for one size, from `vocab_evidence`; or, for VOCAB=auto (size None), the default
    size grown by VOCAB_GROWTH until every kept language's text beyond the corpus takes at most
    QUALITY_LIMITS["outside_token_rise"] more tokens than with `tokenizer` (the original's) and, given the
    `model`, at most QUALITY_LIMITS["outside_bpb_rise"] more bits per byte, measured on each source's
    "selection" sample (the report scores the other, `outside_text`)."""
    from ..model.tokenizer import tokenizer_from_vocab
    from .trim import trimmed_vocab
    from .vocab import TOKENS_PER_LANGUAGE, select_tokens

    target = size or TOKENS_PER_LANGUAGE * len(langs)
    samples = outside_samples(tokenizer, langs) if size is None else []
    bit_samples = outside_bit_samples(tokenizer, langs) if size is None and model is not None else []
    previous = None
    while True:
        selection = select_tokens(vocab, corpus, langs, target, usage)
        kept, trimmed = len(selection.kept), trimmed_vocab(vocab, selection.keep)
        say(f"   vocabulary: {kept} of {len(vocab.tokens)} tokens ({selection.counts()})")
        if size is not None:
            if kept > size:
                raise UserError(f"{option('vocab', size)}: the kept languages need at least {kept} tokens (their "
                                "corpus's tokens, their scripts' characters, bytes and control tokens); raise it or "
                                f"say {option('vocab', 'on')}")
            return selection.keep, trimmed, selection.counts()
        trimmed_tokenizer = tokenizer_from_vocab(trimmed)
        worst = worst_outside_rise(samples, trimmed_tokenizer)
        what, limit = "tokens", QUALITY_LIMITS["outside_token_rise"]
        if worst is None or worst[2] <= limit:
            bits = (worst_outside_bits_rise(model, bit_samples, selection.keep, trimmed_tokenizer)
                    if bit_samples else None)
            if bits is None or bits[2] <= QUALITY_LIMITS["outside_bpb_rise"]:
                if worst:
                    say(f"   beyond the corpus: at most {worst[2]:+.2%} tokens ({worst[0]} {worst[1]})"
                        + (f", {bits[2]:+.2%} bits per byte ({bits[0]} {bits[1]})" if bits else "")
                        + ", selection sample")
                return selection.keep, trimmed, selection.counts()
            worst, what, limit = bits, "bits per byte", QUALITY_LIMITS["outside_bpb_rise"]
        lang, source, rise = worst
        # a larger size added nothing: every token of the scripts is in
        if kept == previous or kept >= len(vocab.tokens):
            raise UserError(f"{option('vocab', 'auto')}: {lang} takes {rise:+.2%} {what} on {source} beyond the corpus "
                            f"with {kept} of {len(vocab.tokens)} tokens kept (limit +{limit:.1%}); say "
                            f"{option('vocab', 'off')} to keep the whole vocabulary")
        previous, target = kept, min(len(vocab.tokens), int(target * VOCAB_GROWTH))
        say(f"   {lang} takes {rise:+.2%} {what} on {source} beyond the corpus (limit +{limit:.1%}): trying {target}")


def outside_samples(tokenizer, langs: list[str]) -> list[tuple[str, str, list[str], int]]:
    """(language, source, documents, their tokens with `tokenizer`) of each kept language's "selection"
    sample beyond the corpus: read and counted once, whatever the number of sizes tried."""
    from ..data.evaluate import scored_tokens

    return [(lang, source, docs, scored_tokens(tokenizer, docs)) for lang, source, docs in outside_selection(langs)]


def worst_outside_rise(samples, trimmed_tokenizer) -> tuple[str, str, float] | None:
    """(language, source, token count rise) of the `outside_samples` entry the trimmed vocabulary's tokenizer
    lengthens most; None where no kept language has text beyond the corpus."""
    from ..data.evaluate import scored_tokens

    rises = [(lang, source, scored_tokens(trimmed_tokenizer, docs) / tokens - 1)
             for lang, source, docs, tokens in samples]
    return max(rises, key=lambda r: r[2], default=None)


@dataclass
class BitSample:
    """A kept language's "selection" sample of one source beyond the corpus, as the bits check reads it."""

    lang: str
    source: str
    docs: list[tuple[str, list[int]]]  # each document and its ids with the original's tokenizer
    nll: dict[int, float] = field(default_factory=dict)  # the original's NLL of document i, once scored
    total: float | None = None  # the original's NLL of them all, once estimated (`_estimated_total`)


def outside_bit_samples(tokenizer, langs: list[str]) -> list[BitSample]:
    """Each kept language's "selection" sample beyond the corpus, whole, tokenized by the original. Nothing is
    scored until a tried vocabulary tokenizes a document differently (`worst_outside_bits_rise`): en,de's
    160,815 tokens change one document of 145."""
    return [BitSample(lang, source, [(doc, encode(tokenizer, doc)) for doc in docs])
            for lang, source, docs in outside_selection(langs)]


def worst_outside_bits_rise(model, samples: list[BitSample], keep: list[int], trimmed_tokenizer
                            ) -> tuple[str, str, float] | None:
    """(language, source, rise of the NLL, so of the bits per byte) of the `outside_bit_samples` entry the trimmed
    vocabulary costs most, scored as the trimmed model scores it: the original's logits of the kept tokens (a trimmed
    embedding and output layer are their rows). Documents it tokenizes as the original did count unchanged (their
    NLL can only fall, the softmax running over fewer tokens), so only the others are scored, before and after."""
    score, index, rises = torch_scorer(model), torch.tensor(keep), []
    with torch.inference_mode():
        for sample in samples:
            change, changed = 0.0, False
            for i, (doc, ids) in enumerate(sample.docs):
                after = encode(trimmed_tokenizer, doc)
                original_ids = [keep[t] for t in after]
                if original_ids != ids:
                    logits = model(torch.tensor([original_ids])).logits[0][:, index]
                    change += nll_from_logits(logits, after) - _original_nll(sample, i, score)
                    changed = True
            rises.append((sample.lang, sample.source, change / _estimated_total(sample, score) if changed else 0.0))
    return max(rises, key=lambda r: r[2], default=None)


def _original_nll(sample: BitSample, i: int, score) -> float:
    """The original's NLL of the sample's document i, scored once."""
    if i not in sample.nll:
        sample.nll[i] = score(sample.docs[i][1])
    return sample.nll[i]


def _estimated_total(sample: BitSample, score) -> float:
    """The original's NLL of the whole sample: its NLL per byte on the first CHARS characters times the sample's
    bytes (scoring all 16,000 characters through Gemma's 262,144-token output layer takes about 30 s a source on
    two cores, 1.5-1.7 s a document; a sample of CHARS characters alone is too few documents to hold a +1% limit:
    docs/benchmarks.md)."""
    from ..data.outside_text import CHARS

    if sample.total is None:
        chars = nll = scored_bytes = 0
        for i, (doc, _) in enumerate(sample.docs):
            if chars >= CHARS:
                break
            nll += _original_nll(sample, i, score)
            chars, scored_bytes = chars + len(doc), scored_bytes + len(doc.encode())
        sample.total = nll * sum(len(doc.encode()) for doc, _ in sample.docs) / scored_bytes
    return sample.total


def source_vocab(loaded: LoadedModel):
    """The model's vocabulary as llama.cpp sees it: from its GGUF, or converted from its tokenizer."""
    from ..model.tokenizer import read_vocab, vocab_from_hf_tokenizer

    return read_vocab(loaded.gguf) if loaded.gguf else vocab_from_hf_tokenizer(loaded.tokenizer)


def apply_cuts(loaded: LoadedModel, cuts: Cuts, grams=None, heal: tuple | None = None):
    """The smaller model and its tokenizer (the original's, or the trimmed vocabulary's);
    o_proj refit to the kept heads when `grams` are given; distilled from the original when `heal` is
    (corpus, kept languages, minutes) (`healed`)."""
    from ..model.tokenizer import tokenizer_from_vocab
    from .refit import refit
    from .trim import trim_embeddings

    model, tokenizer = copy.deepcopy(loaded.model), loaded.tokenizer
    if cuts.heads:
        if grams:
            refit(model, HEADS, cuts.heads.drop, grams)
        HEADS.prune(model, cuts.heads.keep)
    if cuts.neurons:
        NEURONS.prune(model, cuts.neurons.keep)
    if heal:
        healed(loaded, *heal, model, cuts)
    if cuts.tokens:
        trim_embeddings(model, cuts.tokens)
        tokenizer = tokenizer_from_vocab(cuts.vocab)
    return model, tokenizer


def healed(original: LoadedModel, corpus, langs: list[str], minutes: float, model, cuts: Cuts) -> None:
    """Distil the pruned `model` from the `original` for `minutes`, in place, its figures in `cuts.heal` with the
    calibration perplexity before and after. With TOL, the same check as the search's after it: a distillation
    that leaves a kept language beyond TOL while the cut was within it is undone (the cut's weights return)."""
    from .heal import TRAINED, distillation_text, heal

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
