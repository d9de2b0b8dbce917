"""`make export`: load -> analyze -> select -> rewrite -> export -> verify -> report, wired together.

Each stage lives in its subpackage; this module only runs them in order, times them, and writes
into a temporary folder beside the destination that takes its place at the end (`paths.output_folder`),
so a failed or interrupted export leaves nothing half-written and never replaces a good export, and
a folder holding anything langprune did not write is refused before any work.
"""

from pathlib import Path

from .analysis.analyze import Analysis, Settings, analyze_cached
from .cuts.plan import apply_cuts, run_selection
from .cuts.rewrite import save_pruned
from .data.corpus import load_corpus
from .exporters.files import export_all, export_original, onnx_weights
from .llama_tools import TOOLS, llama_tool
from .log import say
from .measure.checks import pytorch_quality, verify
from .model.load import load
from .options import AUTO, NEURON_TOKENS, Context, ExportOptions, all_languages, cuts_ffn, cuts_heads, quant_files
from .paths import export_folder, output_folder
from .preflight import check_options
from .timing import timed


def run_export(options: ExportOptions) -> Path:
    name, layout = check_options(options)
    for tool in TOOLS:  # verify's speed measure, QUANT=auto's importance matrix: refused now if not built
        llama_tool(tool)
    final = Path(options.out or export_folder(name, options.langs))
    with output_folder(final) as work:
        say(f"== load {options.model}")
        timings, peaks = {}, {}
        with timed(timings, "load", peaks):
            loaded, corpus = load(options.model), load_corpus(all_languages(options), options.corpus)
        ctx = Context(options, loaded, corpus, layout, timings, peaks)
        _export_into(ctx, work)
    return final


def _export_into(ctx: Context, work: Path) -> None:
    from .options import options_json
    from .report.plots import heatmap
    from .report.report import export_report, structure, write_report

    options = ctx.options
    ranked = options.search == "once"  # SEARCH=iterative scores heads and neurons itself, as it cuts
    analysis = step(ctx, "analyze heads", lambda: run_analysis(ctx)) if cuts_heads(options) and ranked else None
    neurons, refit = cuts_ffn(options) and ranked, cuts_heads(options) and options.refit
    collected = " + ".join(name for name, wanted in (("neuron statistics", neurons), ("refit inputs", refit)) if wanted)
    stats, grams = step(ctx, collected, lambda: run_calibration(ctx, neurons, refit)) if collected else (None, None)
    cuts = step(ctx, "select", lambda: run_selection(ctx.loaded, ctx.corpus, options, ctx.layout, analysis, stats,
                                                     grams, timings=ctx.timings))
    if analysis is not None:
        analysis.save(work / "analysis.json")
        heatmap(analysis, work / "heatmap.png", dropped=cuts.heads.drop if cuts.heads else [])
    loaded, quants = ctx.loaded, quant_files(options)
    onnx = onnx_weights(loaded.model)  # the original's decides both sides' ONNX weights, as export_original's own
    # one model at a time in float32 where the exporter traces it: the original's files before the cut model exists,
    # the cut model's once the original's weights are gone (after the PyTorch quality, which reads both)
    files = {"before": step(ctx, "export original", lambda: export_original(loaded, quants))}
    pruned, tokenizer = step(ctx, "rewrite", lambda: apply_cuts(loaded, cuts, grams, options.heal, ctx.corpus,
                                                                options.langs))
    stats = grams = None  # spent: the refit's inputs are float64 (heads x head_dim)^2 per layer, 2.9 GB for a 7B
    save_pruned(pruned, tokenizer, work / "pytorch")
    models, tokenizers = {"before": loaded.model, "after": pruned}, {"before": loaded.tokenizer, "after": tokenizer}
    torch_quality = step(ctx, "quality pytorch", lambda: pytorch_quality(models, tokenizers, ctx.corpus, options))
    structures = {side: structure(model) for side, model in models.items()}
    models = None
    loaded.model = None  # every holder's one reference (freed as the next step starts, `timed`): the cut model
    #                      keeps the tensors it shares with it
    files["after"] = step(ctx, "export pruned", lambda: export_all(pruned, tokenizer, loaded.gguf, quants, work,
                                                                      onnx))
    imatrix_model = pruned if options.imatrix else None  # QUANT=auto's importance matrix reads it
    pruned = None  # from here on the checks read files, beside no PyTorch model
    given = given_file(loaded.gguf, files)
    choice = None
    if AUTO in options.quant:
        choice = step(ctx, "choose the deployed file",
                      lambda: run_choice(ctx, files, imatrix_model, tokenizers, given))
        imatrix_model = None
    results = step(ctx, "verify", lambda: verify(torch_quality, tokenizers, files, ctx.corpus, options, cuts, choice,
                                                 given))
    ctx.timings.update({f"verify: {name}": s for name, s in results.pop("seconds").items()})
    ctx.peaks.update({f"verify: {name}": mb for name, mb in results.pop("peaks").items()})
    export = {"model": {"name": loaded.name, "source": str(loaded.source), "fingerprint": loaded.fingerprint},
              "options": options_json(options), "layout": ctx.layout, "structure": structures,
              "timings_s": ctx.timings, "peak_rss_mb": ctx.peaks}
    write_report(work, export_report(work, export, analysis, cuts, files, results))


def step(ctx: Context, name: str, fn):
    say(f"== {name}")
    with timed(ctx.timings, name, ctx.peaks):
        return fn()


def given_file(gguf: Path | None, files: dict) -> Path:
    """The model the user gave, as llama.cpp runs it: their GGUF file; for a Hugging Face directory, its weights in
    the original's F16 GGUF (the precision such checkpoints are published in)."""
    return gguf or Path(files["before"]["gguf F16"])


def run_choice(ctx: Context, files: dict, pruned, tokenizers: dict, given: Path) -> dict:
    """QUANT=auto's deployed file, added to both sides' files: the original's at its file type is its baseline.
    IMATRIX=on: the importance matrix is the pruned model's on its kept languages' calibration text
    (`exporters.imatrix.calibration_matrix`) in PyTorch, `pruned` (None without IMATRIX=on). Where QUANT names no
    GGUF file type, no file larger than the `given` model is chosen."""
    from .exporters.files import gguf_key
    from .exporters.imatrix import calibration_matrix
    from .measure.auto_quant import choose_deployed
    from .options import GGUF_QUANTS

    options = ctx.options
    kinds = [q for q in quant_files(options) if q in GGUF_QUANTS]

    def imatrix(path: Path) -> Path:
        return calibration_matrix(pruned, files["after"]["gguf F16"], tokenizers["after"], ctx.corpus, options.langs,
                                  path)

    named = any(q in GGUF_QUANTS for q in options.quant)  # a user who names file types may ask for larger ones
    choice = choose_deployed(files, tokenizers, options.langs, kinds, max(options.threads), options.reps,
                             options.quant_limit, imatrix if options.imatrix else None,
                             None if named else given.stat().st_size)
    ctx.timings.update({f"choose: {name}": s for name, s in choice.pop("seconds").items()})
    files["after"][choice["file"]] = choice["path"]
    files["before"] = {**files["before"], choice["file"]: files["before"][gguf_key(choice["kind"])]}
    return choice


# -- analyze -----------------------------------------------------------------------------------
def analysis_settings(options: ExportOptions) -> Settings:
    """The head analysis of every analysed language, in sorted order: one cache entry for every kept set of them."""
    return Settings(tuple(sorted(all_languages(options))), **options.settings)


def run_analysis(ctx: Context) -> Analysis:
    settings = analysis_settings(ctx.options)
    loaded = ctx.loaded
    analysis, cached = analyze_cached(loaded.model, loaded.tokenizer, ctx.corpus, settings, loaded.fingerprint)
    say("   analysis reused from cache" if cached else f"   analysis took {sum(analysis.seconds.values()):.0f}s")
    say(f"   {analysis.masking_setup()}")
    return analysis


def run_calibration(ctx: Context, neurons: bool, refit: bool):
    """FFN neuron statistics and the head refit's o_proj inputs: (stats or None, grams or None).

    Both read every language's first NEURON_TOKENS calibration tokens in the same chunks, so when
    both are computed one forward pass collects them (each alone is that pass: 24 s and 29 s cold
    on the AVX2-capped EPYC); the statistics are cached, the grams are not."""
    from contextlib import nullcontext

    from .analysis.neurons import neuron_stats_cached
    from .cuts.refit import CHUNK_TOKENS, GramCollector, refit_grams
    from .log import progress
    from .model.parts import HEADS

    loaded, langs = ctx.loaded, sorted(all_languages(ctx.options))  # sorted: one cache entry for every kept set
    stats, collector, cached = None, GramCollector() if refit else None, True
    if neurons:
        with (collector.hooked(loaded.model) if refit else nullcontext()), \
                progress(total=len(langs) * NEURON_TOKENS, desc="FFN neuron statistics", unit="tok") as bar:
            stats, cached = neuron_stats_cached(loaded.model, loaded.tokenizer, ctx.corpus, langs, loaded.fingerprint,
                                                n_tokens=NEURON_TOKENS, chunk_tokens=CHUNK_TOKENS, progress=bar)
        say("   neuron statistics reused from cache" if cached else "   neuron statistics computed")
    if not refit:
        return stats, None
    if not cached:  # the statistics' pass ran, and collected the grams too
        return stats, collector.grams()[HEADS]
    return stats, refit_grams(loaded.model, loaded.tokenizer, ctx.corpus, langs, n_tokens=NEURON_TOKENS)[HEADS]
