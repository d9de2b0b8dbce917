"""langprune from Python: `export`, `analyze`, `load_pruned`.

    import langprune

    result = langprune.export(langs=["en", "de"])  # the default model, cut, exported and verified
    result.folder, result.report["languages"], result.files
    model, tokenizer = langprune.load_pruned(result.folder / "pytorch")

The options are the command line's, as keywords (`options.ExportOptions`): model, heads, ffn, tol,
vocab, refit, search, heal, layout, quant, quant_limit, imatrix, corpus, analysis_langs, out. Bad input raises
`UserError` before any heavy work. Nothing is printed: the phase lines are INFO messages of the "langprune"
logger, and its progress bars show where those are (`show_progress()` prints them as the command
line does).
"""

import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ExportResult:
    folder: Path  # the export: report.md, report.json, onnx/, gguf/, pytorch/
    report: dict  # report.json
    files: list[Path]  # every file the export wrote, relative to folder


def export(langs, model: str = "gemma3-270m", **options) -> ExportResult:
    """Shrink `model` to the languages `langs` (codes: ["en", "de"] or "en,de"), export and verify it."""
    from .paths import written_files
    from .pipeline import run_export

    folder = run_export(_options(langs, model, options))
    return ExportResult(folder, json.loads((folder / "report.json").read_text()),
                        [Path(name) for name in sorted(written_files(folder))])


def analyze(langs, model: str = "gemma3-270m", corpus=None, analysis_langs=None):
    """The per-language head analysis (`analysis.analyze.Analysis`: scores, specificity, agreement) of `model` on
    the languages `langs` and `analysis_langs` (default: the corpus's, or the UDHR's 12), cached like an export's."""
    from .data.corpus import load_corpus
    from .model.load import load
    from .options import Context, all_languages
    from .pipeline import run_analysis
    from .preflight import check_options

    options = _options(langs, model, {"corpus": corpus, "analysis_langs": analysis_langs})
    _, layout = check_options(options)
    return run_analysis(Context(options, load(options.model), load_corpus(all_languages(options), options.corpus),
                                layout))


def load_pruned(folder):
    """(model, tokenizer) of an export (its folder, or its pytorch/ folder): a transformers model with the cut
    shapes, float32, in eval mode."""
    from .cuts.rewrite import load_pruned as load

    folder = Path(folder)
    return load(folder / "pytorch" if (folder / "pytorch").is_dir() else folder)


def _options(langs, model, options: dict):
    """The ExportOptions of the keywords (langs: ["en", "de"] or "en,de"); an unknown keyword names the known ones."""
    from dataclasses import fields

    from .options import ExportOptions

    known = {f.name for f in fields(ExportOptions)} - {"langs", "model"}
    if unknown := sorted(set(options) - known):
        raise TypeError(f"unknown option {', '.join(unknown)}: langprune takes {', '.join(sorted(known))}")
    codes = [code.strip() for code in langs.split(",")] if isinstance(langs, str) else list(langs)
    return ExportOptions(langs=codes, model=str(model), **options)
