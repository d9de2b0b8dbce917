"""The command line's flags (`build_parser`), each subcommand's, with the types that check them as they are read."""

import argparse
import re
from pathlib import Path

from . import __version__
from .errors import option, via_make

DESCRIPTION = "Shrink a multilingual LLM to the languages a deployment needs; export ONNX and GGUF."
# `bench-languages`: a set per script family, Latin with and without diacritics, Cyrillic, CJK, Arabic,
# Devanagari, Hangul, Vietnamese's stacked diacritics, Turkish's dotless i
DEFAULT_LANGUAGE_SETS = ("en,de", "es,fr", "ru", "ja,zh", "ar", "hi", "ko", "vi", "tr")


def _on_off(text: str) -> bool:
    if text.lower() in ("on", "1", "yes", "true"):
        return True
    if text.lower() in ("off", "0", "no", "false"):
        return False
    raise argparse.ArgumentTypeError(f"{text!r}: say on or off")


def _vocab(text: str) -> bool | int:
    if text.isdigit():
        return int(text)
    if text.lower() == "auto":
        return True
    try:
        return _on_off(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"{text!r}: say auto (on), off or a number of tokens") from None


def _add_model_arguments(p, out: str) -> None:
    """The flags of every subcommand that loads a model and a corpus."""
    p.add_argument("--langs", required=True, help="languages to keep, ISO 639-1 codes: en,de")
    p.add_argument("--model", default="gemma3-270m", help="recipe name, GGUF file or model directory")
    p.add_argument("--corpus", help="a folder of <lang>.txt files instead of the UDHR")
    p.add_argument("--analysis-langs",
                   help="languages to analyze besides the kept ones (default: every language of --corpus, "
                   "or 12 of the UDHR)")
    p.add_argument("--out", type=Path, help=f"output folder (default {out}); a new folder or an earlier output "
                   "of langprune: a folder holding anything else is refused")


def _add_cut_arguments(p) -> None:
    """The flags of what an export cuts and writes."""
    p.add_argument("--heads", type=float, help="fraction of attention heads to drop (0: none)")
    p.add_argument("--ffn", type=float, help="fraction of FFN neurons to drop (0: none)")
    p.add_argument("--tol", type=float, help="for heads/FFN without a fraction: the largest cut keeping every kept "
                   "language's calibration perplexity within +TOL (none of the three given: 0.05, FFN only)")
    p.add_argument("--vocab", type=_vocab, default=True, help="auto (or on; the default), off, or a number of tokens: "
                   "trim the vocabulary to the kept languages' tokens (auto: grown until their text beyond the corpus "
                   "takes at most 0.5%% more tokens and 1%% more bits per byte; a number: at most that many)")
    p.add_argument("--refit", type=_on_off, default=True, help="on (default) or off: refit o_proj to the kept heads "
                   "by least squares on calibration text")
    p.add_argument("--search", default="once", help="once (default): rank heads and FFN neurons once on the original "
                   "model; iterative: cut both a step at a time, re-scoring what is left after each step")
    p.add_argument("--heal", type=float, help="minutes of recovery training after the cuts: distil the pruned model "
                   "from the original on kept-language text (default: none)")
    _add_layout_argument(p)
    p.add_argument("--quant", help="auto (the default), Q8_0,Q4_K_M,... (GGUF) and/or int8,int4 (ONNX): auto deploys "
                   "the fastest, then the smallest, GGUF file of the types given (none: Q8_0,Q4_K_M) with the output "
                   "layer at any type, of those within QUANT_LIMIT beyond the corpus; without auto the smallest GGUF "
                   "file is the deployed one")
    p.add_argument("--quant-limit", type=float, help="auto: the most a kept language's bits per byte beyond the "
                   "corpus may rise against the original at the same file type (default 0.01: +1%%)")
    p.add_argument("--imatrix", type=_on_off, help="auto: on or off (default): a candidate over the limit is "
                   "quantized again with an importance matrix from the kept languages' calibration text and scored")


def _add_speed_arguments(p) -> None:
    p.add_argument("--threads", help="threads the decode speed-up is measured at, e.g. 1,2 (the default)")
    p.add_argument("--reps", type=int, help="interleaved repetitions of each speed measurement (default 3)")


def _add_layout_argument(p) -> None:
    p.add_argument("--layout", help="free or uniform (default: what the model's GGUF can load)")


class _StoreOnce(argparse._StoreAction):
    """A flag's value, refused where the flag is given twice (`--langs en --langs de`: the last would win silently).
    argparse has no such setting; subclassing its store action is the documented way to change what a flag does."""

    def __call__(self, parser, namespace, values, option_string=None):
        given = namespace.__dict__.setdefault("_given", set())
        if self.dest in given:
            parser.error(f"{self.option_strings[0]} given twice: give it once (a list in one, comma-separated: "
                         "--langs en,de)")
        given.add(self.dest)
        super().__call__(parser, namespace, values, option_string)


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.register("action", None, _StoreOnce)  # every plain flag: each subcommand's parser is a _Parser too

    def error(self, message):
        """One line, like every other refusal (the usage is --help's); under make a value that is no number names
        the Make variable (HEADS=abc), as every other refusal does."""
        bad = re.fullmatch(r"argument --([\w-]+): (invalid \w+ value): '(.*)'", message)
        if bad and via_make():
            message = f"{option(bad[1], bad[3])}: {bad[2]}"
        self.exit(2, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """Each subcommand's flags; `args.command` names the subcommand (`cli.COMMANDS` runs it)."""
    parser = _Parser(prog="langprune", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"langprune {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("languages", help="list the languages of the corpus")
    p.add_argument("--corpus", help="a folder of <lang>.txt files instead of the UDHR")
    p = sub.add_parser("export", help="analyze, prune, export ONNX and GGUF, verify, report")
    _add_model_arguments(p, "exported/<model>-<langs>")
    _add_cut_arguments(p)
    _add_speed_arguments(p)
    _add_analyze_parser(sub)
    _add_bench_parsers(sub)
    _add_mobile_check_parser(sub)
    p = sub.add_parser("prepare", help="fetch the corpus and the text beyond it, build llama.cpp's tools for this "
                       "machine, and assemble and cache a model, once (`make setup` runs it)")
    p.add_argument("model", nargs="?", default="gemma3-270m", help="recipe name, GGUF file or model directory")
    return parser


def _add_analyze_parser(sub) -> None:
    p = sub.add_parser("analyze", help="per-language head importance: analysis.json and heatmap.png")
    _add_model_arguments(p, "exported/<model>-analysis")
    p.add_argument("--refit", type=_on_off, default=True, help="with --against-random: also measure each masking "
                   "with o_proj refit to the kept heads (on, the default, or off)")
    p.add_argument("--fresh", action="store_true", help="recompute even if cached (to time it)")
    p.add_argument("--against-random", metavar="BUDGETS", help="e.g. 2,4,9,18: mask the heads selected for --langs "
                   "and as many random heads; compare the loss rise per language (selectivity-<langs>.md)")
    p.add_argument("--compare-masking", action="store_true", help="mask every head exactly in float32 and compare "
                   "the analysis's cheaper masking scores with it, per language (masking-check.md)")


def _add_bench_parsers(sub) -> None:
    p = sub.add_parser("bench", help="re-measure existing exports against their originals")
    p.add_argument("exports", nargs="*", type=Path, help="export folders (default: all under exported/)")
    p = sub.add_parser("bench-frontier", help="the cuts at several levels: size, decode speed-up, kept and dropped "
                       "languages' bits per byte, on the evaluation split and beyond the corpus (frontier.md)")
    _add_model_arguments(p, "exported/frontier-<model>-<langs>")
    _add_layout_argument(p)
    p.add_argument("--levels", help="levels separated by commas, each its cuts joined by +: vocab, vocab=<tokens>, "
                   "heads=<fraction>, ffn=<fraction>, norefit, iterative, heal=<minutes> "
                   "(default: DEFAULT_LEVELS in langprune/frontier.py)")
    _add_speed_arguments(p)
    p = sub.add_parser("bench-speed", help="llama-bench's pp512 and tg128 of GGUF files, each against the first: "
                       "fresh processes, runs interleaved, mean and spread")
    p.add_argument("files", nargs="+", type=Path, help="GGUF files; the first is the baseline")
    p.add_argument("--threads", help="thread counts, e.g. 1,2 (the default)")
    p.add_argument("--reps", type=int, default=5, help="runs of each file at each thread count (default 5)")
    p = sub.add_parser("bench-quants", help="the original and each export at every GGUF file type, the output layer "
                       "at each type: size, llama-bench, bits per byte, the Pareto front; added to their report")
    p.add_argument("exports", nargs="*", type=Path, help="export folders (default: all under exported/)")
    p.add_argument("--threads", help="thread counts, e.g. 1,2 (default 2)")
    p.add_argument("--reps", type=int, default=5, help="llama-bench runs of each file at each thread count (default 5)")
    p.add_argument("--quants", help="the GGUF file types, e.g. Q4_K_M,Q4_0 (default: all of QUANT's; the deployed "
                   "one always)")
    p = sub.add_parser("bench-languages", help="one export per language set, with the default options: kept tokens, "
                       "size, decode speed-up, the worst kept language beyond the corpus (languages.md)")
    p.add_argument("sets", nargs="*",
                   help=f"language sets, each like --langs (default: {' '.join(DEFAULT_LANGUAGE_SETS)})")
    p.add_argument("--model", default="gemma3-270m", help="recipe name, GGUF file or model directory")
    p.add_argument("--corpus", help="a folder of <lang>.txt files instead of the UDHR")
    p.add_argument("--vocab", type=_vocab, default=True, help="as for export (default auto)")
    p.add_argument("--out", type=Path, help="the table's folder (default exported/languages-<model>); each set's "
                   "export goes where `export` puts it")
    _add_speed_arguments(p)


def _add_mobile_check_parser(sub) -> None:
    p = sub.add_parser("mobile-check",
                       help="check exports for on-device runtimes (ONNX Runtime Mobile, llama.cpp on arm64 "
                       "under qemu-user); adds to their report")
    p.add_argument("exports", nargs="*", type=Path, help="export folders (default: all under exported/)")
    p.add_argument("--install", action="store_true", help="run, as root, the apt-get/dpkg commands the arm64 checks "
                   "need (g++-aarch64-linux-gnu, qemu-user, arm64 among dpkg's architectures); without it they are "
                   "named and nothing on the system changes")
    p.add_argument("--quants", help="the GGUF files to run on arm64, of Q4_K_M,Q8_0,Q4_0 (default: all three; "
                   "each is minutes emulated)")
    p.add_argument("--langs", help="the kept languages to check, e.g. de (default: all the export keeps; each is "
                   "minutes emulated)")
