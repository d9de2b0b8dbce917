"""Every bad input refused in seconds, before any heavy work (`check_options`): the options, the corpus
folder, and what a GGUF header or a config.json can tell."""

import math

from .data.corpus import available_languages, load_corpus
from .data.languages import DEFAULT_ANALYSIS, parse_codes
from .data.outside_text import check_outside_text
from .errors import UserError, option
from .exporters.gguf_arch import check_hf_source
from .model.families import LAYOUTS
from .model.load import check_source
from .options import (
    AUTO,
    DEFAULT_TOL,
    GGUF_QUANTS,
    ONNX_QUANTS,
    QUALITY_LIMITS,
    SEARCHES,
    ExportOptions,
    all_languages,
    eval_languages,
)


def _check_quant(options: ExportOptions) -> None:
    """QUANT's kinds in any case (q6_k as Q6_K, as LANGS takes EN), each one langprune makes; QUANT_LIMIT and
    IMATRIX only with auto, whose choice they shape (the limit's default: the report's limit beyond the corpus)."""
    by_case = {kind.lower(): kind for kind in (*GGUF_QUANTS, *ONNX_QUANTS, AUTO)}
    options.quant = [by_case.get(q.lower(), q) for q in options.quant]
    bad = [q for q in options.quant if q not in (*GGUF_QUANTS, *ONNX_QUANTS, AUTO)]
    if bad or not options.quant:
        raise UserError(f"{option('quant', ','.join(options.quant))}: "
                        f"choose {AUTO} (the default) or any of {', '.join(GGUF_QUANTS + ONNX_QUANTS)}")
    if options.quant_limit is None:
        options.quant_limit = QUALITY_LIMITS["outside_bpb_rise"] if AUTO in options.quant else None
    elif AUTO not in options.quant:
        raise UserError(f"{option('quant-limit', options.quant_limit)} is the limit of {option('quant', AUTO)}: add "
                        f"{AUTO} to {option('quant', ','.join(options.quant))}, or leave the limit out")
    elif not 0 <= options.quant_limit < 1:
        raise UserError(f"{option('quant-limit', options.quant_limit)}: a fraction, e.g. 0.02 for +2% bits per byte")
    if options.imatrix and AUTO not in options.quant:
        raise UserError(f"{option('imatrix', 'on')} quantizes {option('quant', AUTO)}'s candidates again: add {AUTO} "
                        f"to {option('quant', ','.join(options.quant))}, or leave it out")


def check_fraction(value: float | None, where: str) -> None:
    """A fraction of heads or FFN neurons to drop (None or 0: none), for an option or a frontier level `where`."""
    if value is not None and not 0 <= value < 1:
        raise UserError(f"{where}: the fraction to drop must be in [0, 1)")


def check_options(options: ExportOptions) -> tuple[str, str]:
    """Fail fast on bad input, before any heavy work: (model name, layout). Everything the options,
    the corpus folder, a GGUF header or a config.json can tell is checked here, in seconds."""
    for name, value in (("heads", options.heads), ("ffn", options.ffn)):
        check_fraction(value, option(name, value))
    if options.reps < 1:
        raise UserError(f"{option('reps', options.reps)}: give at least 1 interleaved repetition")
    if isinstance(options.threads, int):  # threads=2 from Python: one count
        options.threads = (options.threads,)
    if not options.threads or min(options.threads) < 1:
        raise UserError(f"{option('threads', ','.join(map(str, options.threads)))}: give positive numbers of threads")
    if options.heal is not None and not 0 < options.heal < math.inf:
        raise UserError(f"{option('heal', options.heal)}: give the minutes of recovery training, "
                        f"e.g. {option('heal', 5)}")
    if options.search not in SEARCHES:
        raise UserError(f"{option('search', options.search)}: choose {' or '.join(SEARCHES)}")
    if options.tol is not None and not 0 < options.tol < 1:
        raise UserError(f"{option('tol', options.tol)}: the tolerance is a fraction, e.g. 0.02 for +2% perplexity")
    if not isinstance(options.vocab, bool) and not (isinstance(options.vocab, int) and options.vocab >= 1):
        raise UserError(f"{option('vocab', options.vocab)}: give a number of tokens, or off to keep the vocabulary")
    if options.heads is None and options.ffn is None and options.tol is None:
        options.tol, options.heads = DEFAULT_TOL, 0.0  # heads only when asked: the report's cuts section says why
    if not (options.heads or options.ffn or options.tol or options.vocab):
        raise UserError(f"nothing to cut: give {option('heads')}, {option('ffn')} or {option('tol')}, or leave "
                        f"{option('vocab')} on")
    _check_quant(options)
    if options.layout is not None and options.layout not in LAYOUTS:
        raise UserError(f"{option('layout', options.layout)}: choose {' or '.join(LAYOUTS)}")
    available = available_languages(options.corpus)
    options.langs = parse_codes(options.langs, available)
    if options.analysis_langs == []:
        raise UserError(f"{option('analysis-langs', '')}: give language codes, e.g. fr,es, or leave it out")
    default_analysis = available if options.corpus else DEFAULT_ANALYSIS
    options.analysis_langs = parse_codes(options.analysis_langs or default_analysis, available)
    if options.corpus:  # a user's folder: every file read now (seconds), so a bad one is named before the work
        load_corpus(all_languages(options), options.corpus)
    check_outside_text([lang for langs in eval_languages(options) for lang in langs])
    name, path, family = check_source(options.model)
    layout = options.layout or family.layouts[0]
    if layout not in family.layouts:
        raise UserError(
            f"{option('layout', layout)}: the GGUF architecture of {name} loads only {', '.join(family.layouts)} "
            f"layouts (llama.cpp's {family.gguf_arch} graph takes one head count and one FFN width for all layers)"
        )
    if path.is_dir():
        check_hf_source(path, family)
    if options.heads or options.ffn:  # the header read again only for a fraction to check
        _check_cut_sizes(options, *_shapes(path), layout)
    return name, layout


def _shapes(path) -> tuple[int | None, int | None, int | None]:
    """(layers, attention heads a layer, FFN width) of a GGUF header or a config.json; None where it says none (a
    pruned GGUF's per-layer list, a config without the key)."""
    import json

    from .model.gguf_file import read_header

    if path.is_dir():
        config = json.loads((path / "config.json").read_text())
        values = [config.get(key) for key in ("num_hidden_layers", "num_attention_heads", "intermediate_size")]
    else:
        header = read_header(path)
        arch = header.get("general.architecture")
        values = [header.get(f"{arch}.{key}") for key in ("block_count", "attention.head_count",
                                                            "feed_forward_length")]
    return tuple(v if isinstance(v, int) and v > 0 else None for v in values)


def _check_cut_sizes(options: ExportOptions, layers: int | None, heads: int | None, ffn: int | None,
                     layout: str) -> None:
    """A HEADS or FFN fraction that rounds to no unit or to every unit at `layout`, refused from the model's shapes
    (the selection refused it minutes in, after the head analysis or the neuron statistics)."""
    from .analysis.neurons import uniform_width
    from .cuts.select import budget_heads
    from .cuts.tolerance import FFN_STEP

    if options.heads and layers and heads:
        dropped = budget_heads(options.heads, layers, heads, layout)
        if dropped == 0:
            raise UserError(f"{option('heads', options.heads)} drops no head of {heads} a layer with the {layout} "
                            "layout; raise it")
        if dropped >= layers * heads or (layout == "uniform" and dropped // layers >= heads):
            raise UserError(f"{option('heads', options.heads)} drops every head of {heads} a layer with the "
                            f"{layout} layout; lower it")
    if options.ffn and ffn and layout == "uniform":  # free widths keep at least one step a layer, and drop some
        step = FFN_STEP[layout]
        width = uniform_width(options.ffn, ffn, step)
        if width <= 0 or width >= ffn:
            raise UserError(f"{option('ffn', options.ffn)} drops {'every' if width <= 0 else 'no'} FFN neuron of "
                            f"{ffn} a layer with the {layout} layout (widths are multiples of {step}); "
                            f"{'lower' if width <= 0 else 'raise'} it")
