"""`make export`: load -> analyze -> select -> rewrite -> export -> verify -> report, wired together.

Everything is written into a temporary folder beside the destination and renamed at the end, so
a failed or interrupted export leaves nothing half-written and never replaces a good export.
The original model's exports (the "before" of every comparison) are cached by fingerprint.
"""

import contextlib
import copy
import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from .analyze import Analysis, Settings, analyze_cached
from .corpus import available_languages, calibration_ids, load_corpus
from .cuts import HEADS, NEURONS, Selection, mask_from_drop, mask_from_keep
from .errors import UserError
from .evaluate import Chunk, score_chunks, torch_scorer
from .export_gguf import QUANT_KINDS
from .families import LAYOUTS
from .heads import kv_head_counts
from .languages import DEFAULT_ANALYSIS, parse_codes
from .load import LoadedModel, load, resolve
from .paths import cache_dir, export_dir, written
from .rewrite import save_pruned
from .select import budget_heads, candidate_budgets, drop_costs, search, select_heads

GGUF_QUANTS = tuple(QUANT_KINDS)  # Q8_0, Q4_K_M
ONNX_QUANTS = ("int8", "int4")
DEFAULT_TOL = 0.05  # when neither HEADS, FFN nor TOL is given
N_DROPPED_EVAL = 6  # dropped languages evaluated in the report
NEURON_TOKENS = 1024  # calibration tokens per language for the FFN neuron statistics
# FFN widths move in steps of this many neurons (llama.cpp quantizes rows in blocks of 32; a
# uniform step of 64 is fine enough for a tolerance search, at ~3% of Gemma's 2048 a step)
FFN_STEP = {"uniform": 64, "free": 32}


@dataclass
class ExportOptions:
    langs: list[str]
    model: str = "gemma3-270m"
    heads: float | None = None  # fraction of attention heads to drop
    ffn: float | None = None  # fraction of FFN neurons to drop
    tol: float | None = None  # or, for heads and FFN without a fraction: the largest cut keeping
    #                           every kept language's calibration perplexity within +tol
    vocab: bool | int = True  # trim the vocabulary to the tokens the kept languages use (an int: at most that many)
    refit: bool = True  # refit o_proj to the kept heads by least squares (toolchain/refit.py)
    layout: str | None = None  # free | uniform; default: what the recipe's GGUF can load
    quant: list[str] = field(default_factory=lambda: list(GGUF_QUANTS))
    corpus: str | None = None
    analysis_langs: list[str] = field(default_factory=lambda: list(DEFAULT_ANALYSIS))
    out: Path | None = None
    reps: int = 3
    threads: tuple[int, ...] = (1, 2)
    settings: dict = field(default_factory=dict)  # overrides of analyze.Settings


@dataclass
class Context:
    """What the stages hand on: plain values, built up step by step."""

    options: ExportOptions
    loaded: LoadedModel
    corpus: object
    layout: str
    timings: dict = field(default_factory=dict)


@dataclass
class Cuts:
    """What goes: heads, FFN neurons, vocabulary (None: that part is untouched)."""

    heads: Selection | None = None
    neurons: Selection | None = None
    tokens: list[int] | None = None  # kept token ids of the original vocabulary
    vocab: object = None  # the trimmed vocabulary (tokenizer.GGUFVocab) when tokens are kept
    token_parts: dict | None = None  # kept tokens by the step that chose them (vocab.PARTS)
    search: dict | None = None  # the tolerance search: baseline and every probe


def check_options(options: ExportOptions) -> tuple[str, str]:
    """Fail fast on bad input, before any heavy work: (model name, layout)."""
    available = available_languages(options.corpus)
    options.langs = parse_codes(options.langs, available)
    options.analysis_langs = parse_codes(options.analysis_langs, available)
    for name, value in (("HEADS", options.heads), ("FFN", options.ffn)):
        if value is not None and not 0 <= value < 1:
            raise UserError(f"{name}={value}: the fraction to drop must be in [0, 1)")
    if options.tol is not None and not 0 < options.tol < 1:
        raise UserError(f"TOL={options.tol}: the tolerance is a fraction, e.g. 0.02 for +2% perplexity")
    if options.heads is None and options.ffn is None and options.tol is None:
        options.tol = DEFAULT_TOL
    if not (options.heads or options.ffn or options.tol or options.vocab):
        raise UserError("nothing to cut: give HEADS, FFN or TOL, or leave VOCAB on")
    bad = [q for q in options.quant if q not in GGUF_QUANTS + ONNX_QUANTS]
    if bad:
        raise UserError(f"unknown QUANT {bad}: choose from {', '.join(GGUF_QUANTS + ONNX_QUANTS)}")
    name, _, recipe = resolve(options.model)
    layouts = recipe.family.layouts if recipe else LAYOUTS
    layout = options.layout or ("uniform" if "uniform" in layouts else layouts[0])
    if layout not in LAYOUTS:
        raise UserError(f"unknown LAYOUT={layout} (free, uniform)")
    if layout not in layouts:
        raise UserError(
            f"LAYOUT={layout}: the GGUF architecture of {name} loads only {', '.join(layouts)} layouts "
            f"(llama.cpp's {recipe.family.gguf_arch} graph takes one head count and one FFN width for all layers)"
        )
    return name, layout


def cuts_heads(options: ExportOptions) -> bool:
    return bool(options.heads) or (options.heads is None and options.tol is not None)


def cuts_ffn(options: ExportOptions) -> bool:
    return bool(options.ffn) or (options.ffn is None and options.tol is not None)


def run_export(options: ExportOptions) -> Path:
    name, layout = check_options(options)
    final = Path(options.out or export_dir() / f"{name}-{'-'.join(options.langs)}")
    with written(final) as work:
        work.mkdir()
        print(f"Loading {options.model} ...")
        ctx = Context(options, load(options.model), load_corpus(all_languages(options), options.corpus), layout)
        _export_into(ctx, work)
    return final


def all_languages(options: ExportOptions) -> list[str]:
    return list(dict.fromkeys(options.langs + options.analysis_langs))


def _export_into(ctx: Context, work: Path) -> None:
    from .plots import heatmap
    from .report import write_report

    options = ctx.options
    analysis = step(ctx, "analyze heads", lambda: run_analysis(ctx)) if cuts_heads(options) else None
    stats = step(ctx, "analyze neurons", lambda: run_neuron_stats(ctx)) if cuts_ffn(options) else None
    grams = step(ctx, "refit inputs", lambda: run_refit_inputs(ctx)) if analysis is not None and options.refit else None
    cuts = step(ctx, "select", lambda: run_selection(ctx, analysis, stats, grams))
    if analysis is not None:
        analysis.save(work / "analysis.json")
        heatmap(analysis, work / "heatmap.png", dropped=cuts.heads.drop if cuts.heads else [])
    pruned, tokenizer = step(ctx, "rewrite", lambda: rewrite(ctx, cuts, grams))
    save_pruned(pruned, tokenizer, work / "pytorch")
    before = step(ctx, "export original", lambda: export_original(ctx))
    after = step(ctx, "export pruned", lambda: export_all(ctx, pruned, tokenizer, work))
    results = step(ctx, "verify", lambda: verify(ctx, cuts, pruned, tokenizer, before, after))
    write_report(work, ctx, analysis, cuts, pruned, before, after, results)


def step(ctx: Context, name: str, fn):
    start = time.perf_counter()
    print(f"== {name}")
    out = fn()
    ctx.timings[name] = round(time.perf_counter() - start, 1)
    return out


# -- analyze -----------------------------------------------------------------------------------
def run_analysis(ctx: Context) -> Analysis:
    settings = Settings(tuple(all_languages(ctx.options)), **ctx.options.settings)
    loaded = ctx.loaded
    analysis, cached = analyze_cached(loaded.model, loaded.tokenizer, ctx.corpus, settings, loaded.fingerprint)
    print("   analysis reused from cache" if cached else f"   analysis took {sum(analysis.seconds.values()):.0f}s")
    print(f"   {analysis.masking_setup()}")
    return analysis


def run_neuron_stats(ctx: Context):
    from tqdm import tqdm

    from .neurons import neuron_stats_cached

    loaded, langs = ctx.loaded, all_languages(ctx.options)
    with tqdm(total=len(langs) * NEURON_TOKENS, desc="FFN neuron statistics", unit="tok") as bar:
        stats, cached = neuron_stats_cached(loaded.model, loaded.tokenizer, ctx.corpus, langs, loaded.fingerprint,
                                            n_tokens=NEURON_TOKENS, progress=bar)
    print("   neuron statistics reused from cache" if cached else "   neuron statistics computed")
    return stats


def run_refit_inputs(ctx: Context):
    from .refit import refit_grams

    loaded = ctx.loaded
    return refit_grams(loaded.model, loaded.tokenizer, ctx.corpus, all_languages(ctx.options))


# -- select ------------------------------------------------------------------------------------
def run_selection(ctx: Context, analysis: Analysis | None, stats, grams=None) -> Cuts:
    """FFN neurons first, then heads (each by its fraction, or the largest cut within TOL,
    measured together with what is already cut, and refit when `grams` are given), then the vocabulary."""
    options, cuts = ctx.options, Cuts()
    measure = calibration_perplexity(ctx, grams)
    if options.tol is not None:
        cuts.search = {"tol": options.tol, "baseline": measure(cuts), "probes": []}
    if stats is not None:
        cuts.neurons = select_ffn(ctx, stats, cuts, measure)
    if analysis is not None:
        cuts.heads = select_head_cut(ctx, analysis, cuts, measure)
    if options.vocab:
        cuts.tokens, cuts.vocab, cuts.token_parts = select_vocab(ctx)
    if not (cuts.heads or cuts.neurons or cuts.tokens):
        raise UserError(f"nothing can go within TOL={options.tol}: every probe raised a kept language's perplexity more")
    return cuts


def probe(cuts: Cuts, trial: Cuts, measure, **what) -> bool:
    """Measure `trial` (the cuts so far plus a candidate); whether every kept language stays within
    TOL of the baseline. Each probe is recorded in the search's trail."""
    baseline, tol = cuts.search["baseline"], cuts.search["tol"]
    ppl = measure(trial)
    ok = all(ppl[lang] <= baseline[lang] * (1 + tol) for lang in baseline)
    cuts.search["probes"].append({**what, "perplexity": ppl, "within_tolerance": ok})
    return ok


def select_ffn(ctx: Context, stats, cuts: Cuts, measure) -> Selection | None:
    from .neurons import neuron_scores, select_neurons

    scores, step = neuron_scores(stats, ctx.options.langs), FFN_STEP[ctx.layout]
    width = NEURONS.sizes(ctx.loaded.model)[0]
    fractions = [k * step / width for k in range(1, (width // step) * 3 // 4)]  # up to 75% of the neurons
    return search(lambda fraction: select_neurons(scores, fraction, ctx.layout, step), ctx.options.ffn, fractions,
                  lambda fraction, sel: probe(cuts, replace(cuts, neurons=sel), measure, cut="ffn", fraction=fraction))


def select_head_cut(ctx: Context, analysis: Analysis, cuts: Cuts, measure) -> Selection | None:
    model, options = ctx.loaded.model, ctx.options
    costs = drop_costs(analysis, options.langs)
    n_kv = kv_head_counts(model)[0]
    fixed = None
    if options.heads is not None:
        fixed = budget_heads(options.heads, analysis.layers, analysis.heads, ctx.layout)
        if fixed == 0:
            raise UserError(f"HEADS={options.heads} drops no head with the {ctx.layout} layout; raise it")
    budgets = [n for n in candidate_budgets(costs, n_kv, ctx.layout) if n > 0] if fixed is None else []
    return search(lambda n_drop: select_heads(costs, n_kv, n_drop, ctx.layout), fixed, budgets,
                  lambda n_drop, sel: probe(cuts, replace(cuts, heads=sel), measure, cut="heads", heads=n_drop))


def select_vocab(ctx: Context):
    """(kept token ids, the trimmed vocabulary, how many tokens each step chose)."""
    from .vocab import frequent_words, predicted_usage, select_tokens, trimmed_vocab

    loaded, langs, size = ctx.loaded, ctx.options.langs, ctx.options.vocab
    size = None if size is True else size
    vocab = source_vocab(loaded)
    for lang in (lang for lang in langs if not frequent_words(lang, 1)):
        print(f"   warning: wordfreq has no word frequencies for {lang}: its tokens come from the corpus and the "
              "model's own predictions only, and may not hold on other text")
    usage = predicted_usage(loaded.model, loaded.tokenizer, ctx.corpus, langs)  # ranks tokens beyond the corpus
    selection = select_tokens(vocab, ctx.corpus, langs, size, usage)
    if size is not None and len(selection.kept) > size:
        raise UserError(f"VOCAB={size}: the kept languages need at least {len(selection.kept)} tokens (their corpus's "
                        "tokens, their scripts' characters, bytes and control tokens); raise VOCAB or say VOCAB=on")
    print(f"   vocabulary: {len(selection.kept)} of {len(vocab.tokens)} tokens ({selection.counts()})")
    return selection.keep, trimmed_vocab(vocab, selection.keep), selection.counts()


def source_vocab(loaded: LoadedModel):
    """The model's vocabulary as llama.cpp sees it: from its GGUF, or converted from its tokenizer."""
    from .tokenizer import read_vocab, vocab_from_hf_tokenizer

    return read_vocab(loaded.gguf) if loaded.gguf else vocab_from_hf_tokenizer(loaded.tokenizer)


def calibration_perplexity(ctx: Context, grams=None, n_tokens: int = 1024):
    """measure(cuts) -> {kept lang: calibration perplexity} with the cuts' heads and neurons masked
    (and o_proj refit to the kept heads when `grams` are given, as `rewrite` will).

    The refit's fit saw these tokens too (with every other language's); the report's quality
    figures come from the evaluation split, which neither saw."""
    from .refit import refitted_heads

    model, tokenizer = ctx.loaded.model, ctx.loaded.tokenizer
    chunks = {lang: calibration_ids(tokenizer, ctx.corpus, lang, n_tokens, 512) for lang in ctx.options.langs}

    def measure(cuts: Cuts) -> dict[str, float]:
        drop = cuts.heads.drop if cuts.heads else []
        keep = cuts.neurons.keep if cuts.neurons else [list(range(w)) for w in NEURONS.sizes(model)]
        refit = refitted_heads(model, drop, grams) if grams and drop else contextlib.nullcontext()
        with refit, HEADS.masked(model, mask_from_drop(HEADS.sizes(model), drop)), \
                NEURONS.masked(model, mask_from_keep(NEURONS.sizes(model), keep)):
            return {
                lang: score_chunks(torch_scorer(model), [Chunk(ids, 1) for ids in c]).perplexity
                for lang, c in chunks.items()
            }

    return measure


# -- rewrite -----------------------------------------------------------------------------------
def rewrite(ctx: Context, cuts: Cuts, grams=None):
    """The smaller model and its tokenizer (the original's, or the trimmed vocabulary's);
    o_proj refit to the kept heads when `grams` are given."""
    from .refit import refit_heads
    from .tokenizer import tokenizer_from_vocab
    from .vocab import trim_embeddings

    model, tokenizer = copy.deepcopy(ctx.loaded.model), ctx.loaded.tokenizer
    if cuts.heads:
        if grams:
            refit_heads(model, cuts.heads.drop, grams)
        HEADS.prune(model, cuts.heads.keep)
    if cuts.neurons:
        NEURONS.prune(model, cuts.neurons.keep)
    if cuts.tokens:
        trim_embeddings(model, cuts.tokens)
        tokenizer = tokenizer_from_vocab(cuts.vocab)
    return model, tokenizer


# -- export ------------------------------------------------------------------------------------
def export_all(ctx: Context, model, tokenizer, folder: Path) -> dict[str, Path]:
    """ONNX (+ quantized copies asked for, + ORT format) and GGUF F16 (+ quantized) into folder."""
    from .export_gguf import export_gguf, quantize_gguf
    from .export_onnx import export_onnx, quantize_onnx, to_ort_format

    loaded, quant = ctx.loaded, ctx.options.quant
    files = {"onnx fp32": export_onnx(model, tokenizer, folder / "onnx")}
    for kind in (q for q in quant if q in ONNX_QUANTS):
        dst = folder / f"onnx-{kind}" / "model.onnx"
        files[f"onnx {kind}"] = quantize_onnx(files["onnx fp32"], dst, kind)
        files[f"ort {kind}"] = to_ort_format(dst)
    gguf_dir = folder / "gguf"
    gguf_dir.mkdir(parents=True, exist_ok=True)
    files["gguf F16"] = export_gguf(model, loaded.gguf, tokenizer, gguf_dir / "model-F16.gguf")
    for kind in (q for q in quant if q in GGUF_QUANTS):
        files[f"gguf {kind}"] = quantize_gguf(files["gguf F16"], gguf_dir / f"model-{kind}.gguf", kind)
    return files


def export_original(ctx: Context) -> dict[str, Path]:
    """The unpruned model through the same exporters: the fair 'before'. Cached by fingerprint."""
    key = f"{ctx.loaded.name}-{ctx.loaded.fingerprint}-{'-'.join(sorted(ctx.options.quant))}"
    folder = cache_dir() / "exports" / key
    index = folder / "files.json"
    if index.exists():
        print("   original exports reused from cache")
        return {k: Path(v) for k, v in json.loads(index.read_text()).items()}
    with written(folder) as partial:
        files = export_all(ctx, ctx.loaded.model, ctx.loaded.tokenizer, partial)
    files = {k: folder / p.relative_to(partial) for k, p in files.items()}
    index.write_text(json.dumps({k: str(v) for k, v in files.items()}))
    return files


# -- verify ------------------------------------------------------------------------------------
def eval_languages(ctx: Context) -> tuple[list[str], list[str]]:
    kept = ctx.options.langs
    dropped = [lang for lang in ctx.options.analysis_langs if lang not in kept][:N_DROPPED_EVAL]
    return kept, dropped


def verify(ctx: Context, cuts: Cuts, pruned, tokenizer, before: dict, after: dict) -> dict:
    from .verify import measure_exports

    kept, dropped = eval_languages(ctx)
    original = ctx.loaded.tokenizer
    tokenizers = {"before": original, "after": tokenizer}
    gguf_quants = [q for q in ctx.options.quant if q in GGUF_QUANTS]
    results = measure_exports(tokenizers, ctx.corpus, kept, dropped, before, after, gguf_quants,
                              ctx.options.reps, ctx.options.threads)
    results["quality"] = {
        "pytorch fp32": {side: _torch_quality(model, tokenizers[side], ctx.corpus, kept + dropped)
                         for side, model in (("before", ctx.loaded.model), ("after", pruned))},
        **results["quality"],
    }
    key = f"gguf {gguf_quants[-1]}" if gguf_quants else "gguf F16"
    results["outside"] = verify_outside(cuts, tokenizers, kept, dropped, before, after, key)
    if cuts.tokens:
        from .vocab import tokenization_agreement

        results["tokenization"] = {
            lang: tokenization_agreement(original, tokenizer, cuts.tokens, ctx.corpus.texts[lang]["evaluation"])
            for lang in kept
        }
    return results


def verify_outside(cuts: Cuts, tokenizers: dict, kept: list[str], dropped: list[str], before: dict, after: dict,
                   key: str) -> dict:
    """Quality (and, with a trimmed vocabulary, tokenization) on text the selection never read."""
    from .outside_text import KINDS, outside_corpora
    from .verify import outside_quality

    corpora = outside_corpora(kept, dropped)
    out = {"file": key, "sources": {s: {"kind": KINDS[s], "package": c.source} for s, c in corpora.items()},
           "quality": outside_quality(corpora, tokenizers, key, before, after)}
    if cuts.tokens:
        from .vocab import tokenization_agreement

        out["tokenization"] = {source: {lang: tokenization_agreement(tokenizers["before"], tokenizers["after"], cuts.tokens,
                                                                     corpus.texts[lang]["evaluation"])
                                        for lang in kept if lang in corpus.languages}
                               for source, corpus in corpora.items()}
    return out


def _torch_quality(model, tokenizer, corpus, langs) -> dict:
    from .evaluate import score_languages

    torch.set_num_threads(2)
    scores = score_languages(torch_scorer(model), tokenizer, corpus, "evaluation", langs)
    return {lang: {"perplexity": s.perplexity, "bits_per_byte": s.bits_per_byte, "tokens": s.tokens} for lang, s in scores.items()}


def options_json(options: ExportOptions) -> dict:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(options).items()}
