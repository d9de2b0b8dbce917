"""What an export is asked for (`ExportOptions`; `preflight.check_options` checks it before any heavy work)
and what its stages hand on to each other (`Context`)."""

from dataclasses import asdict, dataclass, field
from pathlib import Path

from .model.load import LoadedModel

DEFAULT_TOL = 0.05  # for the FFN when neither HEADS, FFN nor TOL is given (heads then stay)
N_DROPPED_EVAL = 6  # dropped languages evaluated in the report
SEARCHES = ("once", "iterative")  # how heads and FFN neurons are selected (cuts/plan.py)
# llama.cpp's quantizer (exporters/quantize.py): the file types llama.cpp users pick between; Q4_0 is repacked for ARM
GGUF_QUANTS = ("Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q4_0", "Q3_K_M", "IQ4_NL")
ONNX_QUANTS = ("int8", "int4")  # ONNX Runtime's quantizers, with ORT-format copies
DEFAULT_QUANTS = ("Q8_0", "Q4_K_M")
AUTO = "auto"  # QUANT=auto (the default): the deployed GGUF file chosen by speed and quality (measure/auto_quant.py)
NEURON_TOKENS = 1024  # calibration tokens per language for the FFN neuron statistics
IMATRIX_TOKENS = 4096  # calibration tokens per kept language for IMATRIX=on's importance matrix
# The quality limits every report checks each kept language against, in the deployed file: its bits
# per byte on the evaluation split, its tokens and bits per byte on text beyond the corpus
# (outside_text.py). VOCAB=auto grows the vocabulary until both limits beyond the corpus hold (cuts/vocab_size.py).
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
    quant: list[str] = field(default_factory=lambda: [AUTO])  # file types (`quant_files`), and auto or not
    quant_limit: float | None = None  # auto: how much bits per byte beyond the corpus may rise (default: the limit's)
    imatrix: bool = False  # auto: a candidate over the limit is tried again with an importance matrix
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
    peaks: dict = field(default_factory=dict)  # MB, this process's peak in each step


def cuts_heads(options: ExportOptions) -> bool:
    return bool(options.heads) or (options.heads is None and options.tol is not None)


def cuts_ffn(options: ExportOptions) -> bool:
    return bool(options.ffn) or (options.ffn is None and options.tol is not None)


def quant_files(options: ExportOptions) -> list[str]:
    """The quantized files QUANT asks for: its GGUF file types and ONNX quantizations; auto without a GGUF file type
    adds DEFAULT_QUANTS, the file types it chooses among."""
    files = [q for q in options.quant if q != AUTO]
    if AUTO in options.quant and not any(q in GGUF_QUANTS for q in files):
        files = [*DEFAULT_QUANTS, *files]
    return files


def eval_languages(options: ExportOptions) -> tuple[list[str], list[str]]:
    """The languages the report scores: the kept ones, and the first N_DROPPED_EVAL dropped analysis languages."""
    kept = options.langs
    return kept, [lang for lang in options.analysis_langs if lang not in kept][:N_DROPPED_EVAL]


def all_languages(options: ExportOptions) -> list[str]:
    return list(dict.fromkeys(options.langs + options.analysis_langs))


def options_json(options: ExportOptions) -> dict:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(options).items()}
