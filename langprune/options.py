"""What an export is asked for (`ExportOptions`, checked before any heavy work) and what its stages
hand on to each other (`Context`)."""

from dataclasses import asdict, dataclass, field
from pathlib import Path

from .data.corpus import available_languages, load_corpus
from .data.languages import DEFAULT_ANALYSIS, parse_codes
from .data.outside_text import check_outside_text
from .errors import UserError, option
from .exporters.export_gguf import check_hf_source
from .exporters.files import DEFAULT_QUANTS, GGUF_QUANTS, ONNX_QUANTS
from .model.families import LAYOUTS
from .model.load import LoadedModel, check_source

DEFAULT_TOL = 0.05  # when neither HEADS, FFN nor TOL is given
N_DROPPED_EVAL = 6  # dropped languages evaluated in the report
SEARCHES = ("once", "iterative")  # how heads and FFN neurons are selected (cuts/plan.py)
NEURON_TOKENS = 1024  # calibration tokens per language for the FFN neuron statistics
# The quality limits every report checks each kept language against, in the deployed file: its bits
# per byte on the evaluation split, its tokens and bits per byte on text beyond the corpus
# (outside_text.py). VOCAB=auto grows the vocabulary until the token limit holds (cuts/plan.py).
QUALITY_LIMITS = {"kept_bpb_rise": 0.05, "outside_token_rise": 0.005, "outside_bpb_rise": 0.01}


@dataclass
class ExportOptions:
    langs: list[str]
    model: str = "gemma3-270m"
    heads: float | None = None  # fraction of attention heads to drop
    ffn: float | None = None  # fraction of FFN neurons to drop
    tol: float | None = None  # or, for heads and FFN without a fraction: the largest cut keeping
    #                           every kept language's calibration perplexity within +tol
    vocab: bool | int = True  # trim the vocabulary to the tokens the kept languages use (an int: at most that many)
    refit: bool = True  # refit o_proj to the kept heads by least squares (cuts/refit.py)
    search: str = "once"  # once: rank heads and neurons once, size each part alone; iterative: cuts/iterative.py
    heal: float | None = None  # minutes of distillation from the original after the cuts (cuts/heal.py)
    layout: str | None = None  # free | uniform; default: what the recipe's GGUF can load
    quant: list[str] = field(default_factory=lambda: list(DEFAULT_QUANTS))
    corpus: str | None = None
    analysis_langs: list[str] | None = None  # default: every language of a corpus folder, or DEFAULT_ANALYSIS (UDHR)
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


def check_options(options: ExportOptions) -> tuple[str, str]:
    """Fail fast on bad input, before any heavy work: (model name, layout). Everything the options,
    the corpus folder, a GGUF header or a config.json can tell is checked here, in seconds."""
    for name, value in (("heads", options.heads), ("ffn", options.ffn)):
        if value is not None and not 0 <= value < 1:
            raise UserError(f"{option(name, value)}: the fraction to drop must be in [0, 1)")
    if options.reps < 1:
        raise UserError(f"{option('reps', options.reps)}: give at least 1 interleaved repetition")
    if isinstance(options.threads, int):  # threads=2 from Python: one count
        options.threads = (options.threads,)
    if not options.threads or min(options.threads) < 1:
        raise UserError(f"{option('threads', ','.join(map(str, options.threads)))}: give positive numbers of threads")
    if options.heal is not None and not options.heal > 0:
        raise UserError(f"{option('heal', options.heal)}: give the minutes of recovery training, "
                        f"e.g. {option('heal', 5)}")
    if options.search not in SEARCHES:
        raise UserError(f"{option('search', options.search)}: choose {' or '.join(SEARCHES)}")
    if options.tol is not None and not 0 < options.tol < 1:
        raise UserError(f"{option('tol', options.tol)}: the tolerance is a fraction, e.g. 0.02 for +2% perplexity")
    if not isinstance(options.vocab, bool) and not (isinstance(options.vocab, int) and options.vocab >= 1):
        raise UserError(f"{option('vocab', options.vocab)}: give a number of tokens, or off to keep the vocabulary")
    if options.heads is None and options.ffn is None and options.tol is None:
        options.tol = DEFAULT_TOL
    if not (options.heads or options.ffn or options.tol or options.vocab):
        raise UserError(f"nothing to cut: give {option('heads')}, {option('ffn')} or {option('tol')}, or leave "
                        f"{option('vocab')} on")
    bad = [q for q in options.quant if q not in GGUF_QUANTS + ONNX_QUANTS]
    if bad or not options.quant:
        raise UserError(f"{option('quant', ','.join(options.quant))}: "
                        f"choose from {', '.join(GGUF_QUANTS + ONNX_QUANTS)}")
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
    return name, layout


def cuts_heads(options: ExportOptions) -> bool:
    return bool(options.heads) or (options.heads is None and options.tol is not None)


def cuts_ffn(options: ExportOptions) -> bool:
    return bool(options.ffn) or (options.ffn is None and options.tol is not None)


def eval_languages(options: ExportOptions) -> tuple[list[str], list[str]]:
    """The languages the report scores: the kept ones, and the first N_DROPPED_EVAL dropped analysis languages."""
    kept = options.langs
    return kept, [lang for lang in options.analysis_langs if lang not in kept][:N_DROPPED_EVAL]


def all_languages(options: ExportOptions) -> list[str]:
    return list(dict.fromkeys(options.langs + options.analysis_langs))


def options_json(options: ExportOptions) -> dict:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(options).items()}
