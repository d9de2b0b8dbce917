"""The cuts' frontier (`make bench-frontier`): what each level of cutting costs and buys.

A level is any mix of the export's cuts at fixed sizes, written `+`-joined: `vocab` (the default trim) or
`vocab=<tokens>`, `heads=<fraction>`, `ffn=<fraction>`, `norefit` (heads dropped without the o_proj refit: the same
heads, before recovery), `iterative` (heads and neurons chosen a step at a time, re-scored after each step:
`cuts/iterative.py`) and `heal=<minutes>` (then distilled from the original, `cuts/heal.py`); beside the cuts, or
alone (the original quantized harder: what a user would do without us), `quant=<GGUF file type>` (default QUANT) and
`output=<type>` (the output layer's; a tied embedding table's where that is the output layer). Each level is
selected by the export's own `run_selection` and `apply_cuts`, written as GGUF, quantized, and measured in llama.cpp
against the original's QUANT file: file size, decode and prompt speed-up (llama-bench's tg128 and pp512, runs
interleaved, each a fresh process), the kept languages' bits per byte on the evaluation split and on text beyond the
corpus (`outside_text`, which no selection reads: with a trimmed vocabulary also its token count and tokenization
agreement), and the dropped languages' bits per byte on their first evaluation documents. Every level is selected
before anything is measured, so a bad level fails at once.
"""

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path

from .cuts.plan import apply_cuts, run_selection
from .cuts.vocab_size import select_vocab, vocab_evidence
from .data.outside_text import KINDS, outside_corpora
from .errors import UserError
from .exporters.export_gguf import export_gguf
from .exporters.quantize import OUTPUT_TYPES, block_size, quantize_gguf
from .log import say
from .measure.checks import agreement
from .measure.llama_bench import bench as llama_bench
from .measure.llama_bench import ratios
from .measure.verify import LLAMA_BENCH_REPS, Artifact, dropped_documents, file_size, quality, scorer
from .model.parts import HEADS, NEURONS
from .options import GGUF_QUANTS, eval_languages, quant_files
from .paths import cache_dir, check_output, output_folder, scratch
from .pipeline import run_analysis, run_calibration
from .preflight import check_fraction
from .report.frontier import render_frontier

QUANT = "Q4_K_M"
DEFAULT_LEVELS = ("vocab,vocab=65536,vocab+heads=0.25+norefit,vocab+heads=0.25,vocab+heads=0.25+heal=5,vocab+ffn=0.125,"
                  "vocab=65536+heads=0.5+ffn=0.25,output=Q4_0,vocab+output=Q4_0")


@dataclass(frozen=True)
class Level:
    """One level of cutting, as `ExportOptions` would ask for it with fixed fractions."""

    name: str
    vocab: bool | int = False  # True: the default trim; an int: at most that many tokens
    heads: float | None = None
    ffn: float | None = None
    refit: bool = True
    search: str = "once"  # or "iterative" (cuts/iterative.py)
    heal: float | None = None  # minutes
    quant: str = QUANT  # the GGUF file type
    output: str | None = None  # the output layer's tensor type (default: the file type's)

    @property
    def cuts(self) -> bool:
        return bool(self.vocab or self.heads or self.ffn)


def parse_level(text: str) -> Level:
    """'vocab=65536+heads=0.25+norefit' -> Level; a clear error for anything else."""
    fields = {}
    for part in text.strip().split("+"):
        key, _, value = part.strip().partition("=")
        try:
            if key == "vocab":
                fields["vocab"] = True if value in ("", "default") else int(value)
                if fields["vocab"] < 1:
                    raise ValueError
            elif key in ("heads", "ffn"):
                fields[key] = float(value)
            elif key == "heal":
                fields[key] = float(value)
                if not fields[key] > 0:
                    raise ValueError
            elif key == "norefit" and not value:
                fields["refit"] = False
            elif key == "iterative" and not value:
                fields["search"] = "iterative"
            elif key in ("quant", "output") and value.upper() in (GGUF_QUANTS if key == "quant" else OUTPUT_TYPES):
                fields[key] = value.upper()
            else:
                raise KeyError
        except (ValueError, KeyError):
            raise UserError(f"level {text!r}: {part!r} is not one of vocab, vocab=<tokens>, heads=<fraction>, "
                            f"ffn=<fraction>, norefit, iterative, heal=<minutes>, quant=<{'|'.join(GGUF_QUANTS)}>, "
                            f"output=<{'|'.join(OUTPUT_TYPES)}>; join them with +, e.g. vocab+heads=0.25") from None
    level = Level(text.strip(), **fields)
    for key in ("heads", "ffn"):
        check_fraction(getattr(level, key), f"level {text!r}")
    if not level.cuts and (level.quant, level.output) == (QUANT, None):
        raise UserError(f"level {text!r} cuts nothing and quantizes as the original")
    if not level.cuts and (level.heal or level.search != "once" or not level.refit):
        raise UserError(f"level {text!r}: norefit, iterative and heal go with a cut")
    return level


def frontier(ctx, levels: list[Level], threads: tuple[int, ...] = (1, 2), reps: int = 3) -> dict:
    """{"rows": [the original, then one per level]} for ctx's kept languages.

    ctx: an `options.Context` whose corpus holds the analysed languages (the dropped ones are
    measured); the original's GGUF comes from the export's cache (`export_original`)."""
    from .exporters.files import export_original

    loaded = ctx.loaded
    kept, dropped = eval_languages(ctx.options)
    hidden = loaded.model.config.hidden_size  # the output layer's row length, whatever the cuts
    for level in levels:
        if level.output and hidden % block_size(level.output):
            raise UserError(f"level {level.name!r}: {loaded.name}'s output layer does not fit {level.output}'s blocks "
                            f"(rows of {hidden}); choose another output type")
    selected = _select(ctx, levels)
    bench_reps = max(reps, LLAMA_BENCH_REPS)  # as the export's llama-bench runs
    originals = export_original(loaded, quant_files(ctx.options))
    original = Artifact("llama.cpp", QUANT, originals[f"gguf {QUANT}"])
    corpora, dropped_text = outside_corpora(kept), dropped_documents(ctx.corpus, dropped)

    def measure(artifact: Artifact, tokenizer) -> dict:
        score = scorer(artifact)
        return {"evaluation": quality(score, tokenizer, ctx.corpus, kept),
                "dropped": quality(score, tokenizer, dropped_text, dropped),
                "outside": {source: quality(score, tokenizer, c, c.languages) for source, c in corpora.items()}}

    rows = [{"cut": "original", **_shape(loaded.model), "file_bytes": file_size(original.path),
             **measure(original, loaded.tokenizer)}]
    with scratch(cache_dir() / "frontier") as tmp:
        for i, (level, options, cuts, grams) in enumerate(selected):
            say(f"== level {level.name}")
            if cuts is None:  # the original, quantized otherwise
                pruned, tokenizer, f16 = loaded.model, loaded.tokenizer, originals["gguf F16"]
            else:
                pruned, tokenizer = apply_cuts(loaded, cuts, grams, options.heal, ctx.corpus, options.langs)
                f16 = export_gguf(pruned, loaded.gguf, tokenizer, tmp / f"{i}-F16.gguf")
            tokenizers = {"before": loaded.tokenizer, "after": tokenizer}
            after = Artifact("llama.cpp", level.quant, quantize_gguf(f16, tmp / f"{i}-{level.quant}.gguf", level.quant,
                                                                    output_type=level.output))
            if cuts is not None:
                f16.unlink()
            speeds = ratios(llama_bench({"before": original.path, "after": after.path}, threads, bench_reps),
                            "after", "before")
            row = {"cut": level.name, "quant": level.quant, "output": level.output, **_shape(pruned),
                   "file_bytes": file_size(after.path),
                   **measure(after, tokenizer),
                   "decode_speedup": {str(t): speeds[t]["tg128"] for t in threads},
                   "prompt_speedup": {str(t): speeds[t]["pp512"] for t in threads}}
            if cuts and cuts.heal:
                row["heal"] = cuts.heal
            if cuts and cuts.tokens:
                row["agreement"] = {source: {lang: a["share"]
                                             for lang, a in agreement(tokenizers, cuts.tokens, c, kept).items()}
                                    for source, c in corpora.items()}
            rows.append(row)
            after.path.unlink()
            del pruned
    return {"model": loaded.name, "langs": kept, "dropped": dropped, "measured": time.strftime("%Y-%m-%d %H:%M"),
            "quant": QUANT, "threads": list(threads), "reps": bench_reps, "layout": ctx.layout,
            "sources": {s: {"kind": KINDS[s], "package": c.source} for s, c in corpora.items()}, "rows": rows}


def _select(ctx, levels: list[Level]) -> list[tuple]:
    """(level, its export options, its Cuts, the refit's grams or None) for every level, before any is measured (all
    None for a level that only quantizes); the analysis, neuron statistics, grams and vocabulary evidence are
    computed once for all."""
    ranked = [level for level in levels if level.search == "once"]  # iterative levels score the units themselves
    analysis = run_analysis(ctx) if any(level.heads for level in ranked) else None
    refit = any(level.heads and level.refit for level in levels)
    stats, grams = run_calibration(ctx, any(level.ffn for level in ranked), refit)
    vocab = any(level.vocab for level in levels)
    evidence = vocab_evidence(ctx.loaded, ctx.corpus, ctx.options.langs) if vocab else None
    vocabularies = {}  # one selection per VOCAB setting: VOCAB=auto's check beyond the corpus took 61-116 s on Qwen
    selected = []
    for level in levels:
        if not level.cuts:
            selected.append((level, None, None, None))
            continue
        if level.vocab and level.vocab not in vocabularies:
            vocabularies[level.vocab] = select_vocab(ctx.loaded, ctx.corpus, ctx.options.langs, level.vocab, evidence)
        options = replace(ctx.options, heads=level.heads, ffn=level.ffn, tol=None, vocab=level.vocab, refit=level.refit,
                          search=level.search, heal=level.heal)
        level_grams = grams if level.refit else None
        cuts = run_selection(ctx.loaded, ctx.corpus, options, ctx.layout, analysis if level.heads else None,
                             stats if level.ffn else None, level_grams, vocabulary=vocabularies.get(level.vocab))
        selected.append((level, options, cuts, level_grams))
    return selected


def _shape(model) -> dict:
    """Heads, FFN neurons and vocabulary rows of a model: what a level kept."""
    return {"heads": sum(HEADS.sizes(model)), "neurons": sum(NEURONS.sizes(model)),
            "tokens": model.get_input_embeddings().weight.shape[0]}


def write_frontier(ctx, levels: list[Level], folder: Path, threads=(1, 2), reps: int = 3) -> Path:
    """Measure, then write `frontier.json` and `.md` as folder (whole, or not at all); the .md's path."""
    check_output(folder)  # before the work, not only at the end
    result = frontier(ctx, levels, threads, reps)
    with output_folder(folder) as partial:
        (partial / "frontier.json").write_text(json.dumps(result, indent=1))
        (partial / "frontier.md").write_text(f"# Frontier: {result['model']}, kept {', '.join(result['langs'])}"
                                             f"\n\n{render_frontier(result)}")
    return folder / "frontier.md"
