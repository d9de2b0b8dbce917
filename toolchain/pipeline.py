"""`make export`: load -> analyze -> select -> rewrite -> export -> verify -> report, wired together.

Everything is written into a temporary folder beside the destination and renamed at the end, so
a failed or interrupted export leaves nothing half-written and never replaces a good export.
The original model's exports (the "before" of every comparison) are cached by fingerprint.
"""

import copy
import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from .analyze import Analysis, Settings, analyze_cached, calibration_ids
from .corpus import available_languages, load_corpus
from .errors import UserError
from .evaluate import Chunk, score_chunks, torch_scorer
from .export_gguf import QUANT_KINDS
from .heads import head_counts, kv_head_counts, mask_from_drop, masked_heads
from .languages import DEFAULT_ANALYSIS, parse_codes
from .load import LoadedModel, load, resolve
from .paths import cache_dir, export_dir
from .recipes import LAYOUTS
from .rewrite import prune_heads, save_pruned
from .select import Selection, budget_heads, drop_costs, search_tolerance, select_heads

GGUF_QUANTS = tuple(QUANT_KINDS)  # Q8_0, Q4_K_M
ONNX_QUANTS = ("int8", "int4")
DEFAULT_HEADS = 0.25
N_DROPPED_EVAL = 6  # dropped languages evaluated in the report


@dataclass
class ExportOptions:
    langs: list[str]
    model: str = "gemma3-270m"
    heads: float | None = None  # fraction of heads to drop
    tol: float | None = None  # or: largest drop keeping kept-language perplexity within +tol
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
    layouts: tuple[str, ...]
    layout: str
    timings: dict = field(default_factory=dict)


def check_options(options: ExportOptions) -> tuple[str, tuple[str, ...], str]:
    """Fail fast on bad input, before any heavy work: (model name, allowed layouts, layout)."""
    available = available_languages(options.corpus)
    options.langs = parse_codes(options.langs, available)
    options.analysis_langs = parse_codes(options.analysis_langs, available)
    if options.heads is not None and options.tol is not None:
        raise UserError("give HEADS (a budget) or TOL (a tolerance), not both")
    if options.heads is not None and not 0 < options.heads < 1:
        raise UserError(f"HEADS={options.heads}: the fraction of heads to drop must be in (0, 1)")
    if options.tol is not None and not 0 < options.tol < 1:
        raise UserError(f"TOL={options.tol}: the tolerance is a fraction, e.g. 0.02 for +2% perplexity")
    bad = [q for q in options.quant if q not in GGUF_QUANTS + ONNX_QUANTS]
    if bad:
        raise UserError(f"unknown QUANT {bad}: choose from {', '.join(GGUF_QUANTS + ONNX_QUANTS)}")
    name, _, recipe = resolve(options.model)
    layouts = recipe.gguf_layouts if recipe else LAYOUTS
    layout = options.layout or ("uniform" if "uniform" in layouts else layouts[0])
    if layout not in LAYOUTS:
        raise UserError(f"unknown LAYOUT={layout} (free, uniform)")
    if layout not in layouts:
        raise UserError(
            f"LAYOUT={layout}: the GGUF architecture of {name} loads only {', '.join(layouts)} layouts "
            "(llama.cpp's gemma3 graph takes one head count for all layers)"
        )
    return name, layouts, layout


def run_export(options: ExportOptions) -> Path:
    name, layouts, layout = check_options(options)
    final = Path(options.out or export_dir() / f"{name}-{'-'.join(options.langs)}")
    work = final.with_name(f".{final.name}.partial")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        print(f"Loading {options.model} ...")
        ctx = Context(options, load(options.model), load_corpus(all_languages(options), options.corpus), layouts, layout)
        _export_into(ctx, work)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    _replace(work, final)
    return final


def all_languages(options: ExportOptions) -> list[str]:
    return list(dict.fromkeys(options.langs + options.analysis_langs))


def _replace(work: Path, final: Path) -> None:
    old = final.with_name(f".{final.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    work.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def _export_into(ctx: Context, work: Path) -> None:
    from .plots import heatmap
    from .report import write_report

    analysis = step(ctx, "analyze", lambda: run_analysis(ctx))
    analysis.save(work / "analysis.json")
    selection, tolerance = step(ctx, "select", lambda: run_selection(ctx, analysis))
    heatmap(analysis, work / "heatmap.png", dropped=selection.drop)
    pruned = step(ctx, "rewrite", lambda: prune_heads(copy.deepcopy(ctx.loaded.model), selection.keep))
    save_pruned(pruned, ctx.loaded.tokenizer, work / "pytorch")
    before = step(ctx, "export original", lambda: export_original(ctx))
    after = step(ctx, "export pruned", lambda: export_all(ctx, pruned, work))
    results = step(ctx, "verify", lambda: verify(ctx, analysis, pruned, before, after))
    write_report(work, ctx, analysis, selection, tolerance, before, after, results)


def step(ctx: Context, name: str, fn):
    start = time.perf_counter()
    print(f"== {name}")
    out = fn()
    ctx.timings[name] = round(time.perf_counter() - start, 1)
    return out


# -- analyze and select ----------------------------------------------------------------------
def run_analysis(ctx: Context) -> Analysis:
    settings = Settings(tuple(all_languages(ctx.options)), **ctx.options.settings)
    loaded = ctx.loaded
    analysis, cached = analyze_cached(loaded.model, loaded.tokenizer, ctx.corpus, settings, loaded.fingerprint)
    print("   analysis reused from cache" if cached else f"   analysis took {sum(analysis.seconds.values()):.0f}s")
    return analysis


def run_selection(ctx: Context, analysis: Analysis) -> tuple[Selection, dict | None]:
    model, options = ctx.loaded.model, ctx.options
    costs = drop_costs(analysis, options.langs)
    n_kv = kv_head_counts(model)[0]
    if options.tol is None:
        fraction = DEFAULT_HEADS if options.heads is None else options.heads
        n_drop = budget_heads(fraction, analysis.layers, analysis.heads, ctx.layout)
        if n_drop == 0:
            raise UserError(f"HEADS={fraction} drops no head with the {ctx.layout} layout; raise it")
        return select_heads(costs, n_kv, n_drop, ctx.layout), None
    measure = calibration_perplexity(ctx)
    baseline = measure(None)
    selection, ppl, trail = search_tolerance(costs, n_kv, ctx.layout, options.tol, measure, baseline)
    if not selection.drop:
        raise UserError(f"no head can go within TOL={options.tol}: every probe raised a kept language's perplexity more")
    return selection, {"tol": options.tol, "baseline": baseline, "chosen": ppl, "probes": trail}


def calibration_perplexity(ctx: Context, n_tokens: int = 1024):
    """measure(selection) -> {kept lang: calibration perplexity} with the selection's heads masked."""
    loaded = ctx.loaded
    chunks = {
        lang: calibration_ids(loaded.tokenizer, ctx.corpus, lang, n_tokens, 512) for lang in ctx.options.langs
    }
    def measure(selection: Selection | None) -> dict[str, float]:
        mask = mask_from_drop(head_counts(loaded.model), selection.drop if selection else [])
        with masked_heads(loaded.model, mask):
            return {
                lang: score_chunks(torch_scorer(loaded.model), [Chunk(ids, 1) for ids in c]).perplexity
                for lang, c in chunks.items()
            }

    return measure


# -- export ------------------------------------------------------------------------------------
def export_all(ctx: Context, model, folder: Path) -> dict[str, Path]:
    """ONNX (+ quantized copies asked for, + ORT format) and GGUF F16 (+ quantized) into folder."""
    from .export_gguf import export_gguf, quantize_gguf
    from .export_onnx import export_onnx, quantize_onnx, to_ort_format

    loaded, quant = ctx.loaded, ctx.options.quant
    files = {"onnx fp32": export_onnx(model, loaded.tokenizer, folder / "onnx")}
    for kind in (q for q in quant if q in ONNX_QUANTS):
        dst = folder / f"onnx-{kind}" / "model.onnx"
        files[f"onnx {kind}"] = quantize_onnx(files["onnx fp32"], dst, kind)
        files[f"ort {kind}"] = to_ort_format(dst)
    gguf_dir = folder / "gguf"
    gguf_dir.mkdir(parents=True, exist_ok=True)
    files["gguf F16"] = export_gguf(model, loaded.gguf, loaded.tokenizer, gguf_dir / "model-F16.gguf")
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
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    files = export_all(ctx, ctx.loaded.model, partial)
    files = {k: folder / p.relative_to(partial) for k, p in files.items()}
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)
    index.write_text(json.dumps({k: str(v) for k, v in files.items()}))
    return files


# -- verify ------------------------------------------------------------------------------------
def eval_languages(ctx: Context) -> tuple[list[str], list[str]]:
    kept = ctx.options.langs
    dropped = [lang for lang in ctx.options.analysis_langs if lang not in kept][:N_DROPPED_EVAL]
    return kept, dropped


def verify(ctx: Context, analysis: Analysis, pruned, before: dict, after: dict) -> dict:
    from .verify import measure_exports

    kept, dropped = eval_languages(ctx)
    tok = ctx.loaded.tokenizer
    gguf_quants = [q for q in ctx.options.quant if q in GGUF_QUANTS]
    results = measure_exports(tok, ctx.corpus, kept, dropped, before, after, gguf_quants,
                              ctx.options.reps, ctx.options.threads)
    results["quality"] = {
        "pytorch fp32": {side: _torch_quality(model, tok, ctx.corpus, kept + dropped)
                         for side, model in (("before", ctx.loaded.model), ("after", pruned))},
        **results["quality"],
    }
    return results


def _torch_quality(model, tokenizer, corpus, langs) -> dict:
    from .evaluate import score_languages

    torch.set_num_threads(2)
    scores = score_languages(torch_scorer(model), tokenizer, corpus, "evaluation", langs)
    return {lang: {"perplexity": s.perplexity, "bits_per_byte": s.bits_per_byte, "tokens": s.tokens} for lang, s in scores.items()}


def options_json(options: ExportOptions) -> dict:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(options).items()}
