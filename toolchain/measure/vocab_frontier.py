"""The vocabulary trim's frontier (`make bench-vocab`): what each size costs and buys.

For a few vocabulary sizes, the export's vocabulary-only trim (`cuts.plan.trim_vocab`, the same
selection) is written as GGUF, quantized, and measured in llama.cpp against the original's file
of the same quantization: file size, decode speed-up (interleaved repetitions, each pair in fresh
processes), kept languages' bits per byte on the evaluation split, and on text beyond the corpus
(`outside_text`, which the selection never reads) their token count, bits per byte and
tokenization agreement. The default size is one row of it.
"""

import copy
import json
import tempfile
from pathlib import Path

from ..cuts.plan import trim_vocab, vocab_evidence
from ..cuts.vocab import tokenization_agreement, trim_embeddings
from ..data.outside_text import KINDS, outside_corpora
from ..errors import UserError
from ..export.export_gguf import export_gguf, quantize_gguf
from ..model.tokenizer import tokenizer_from_vocab
from ..report.report import GOALS, markdown_table
from .verify import Artifact, file_size, quality, scorer, speed, speed_prompts

QUANT = "Q4_K_M"


def frontier(ctx, sizes: list[int | None], threads: tuple[int, ...] = (2,), reps: int = 3) -> dict:
    """{"rows": [one per size, the default (None) as its actual count]} for ctx's kept languages.

    ctx: an `options.Context` (model, corpus, kept languages); the original's GGUF comes from the
    export's cache (`export_original`)."""
    from ..export.files import export_original

    loaded, langs = ctx.loaded, ctx.options.langs
    original = Artifact("llama.cpp", QUANT, export_original(ctx)[f"gguf {QUANT}"])
    vocab, usage = vocab_evidence(ctx)
    corpora = outside_corpora(langs)
    measured = {"before": _measure(original, loaded.tokenizer, ctx.corpus, corpora, langs)}
    rows = [{"tokens": len(vocab.tokens), "size": "original", "file_bytes": file_size(original.path), **measured["before"]}]
    with tempfile.TemporaryDirectory(prefix="vocab-frontier-") as tmp:
        for size in sizes:
            keep, trimmed, parts = trim_vocab(vocab, usage, ctx.corpus, langs, size)
            tokenizer = tokenizer_from_vocab(trimmed)
            model = trim_embeddings(copy.deepcopy(loaded.model), keep)
            f16 = export_gguf(model, loaded.gguf, tokenizer, Path(tmp) / f"{len(keep)}-F16.gguf")
            after = Artifact("llama.cpp", QUANT, quantize_gguf(f16, Path(tmp) / f"{len(keep)}-{QUANT}.gguf", QUANT))
            f16.unlink()
            del model
            row = {"tokens": len(keep), "size": size or "default", "parts": parts, "file_bytes": file_size(after.path),
                   **_measure(after, tokenizer, ctx.corpus, corpora, langs)}
            row["agreement"] = {source: {lang: tokenization_agreement(loaded.tokenizer, tokenizer, keep,
                                                                      corpus.texts[lang]["evaluation"])["share"]
                                         for lang in corpus.languages}
                                for source, corpus in corpora.items()}
            tokenizers = {"before": loaded.tokenizer, "after": tokenizer}
            prompts = speed_prompts(tokenizers, ctx.corpus, langs[0])
            timed = speed({QUANT: (original, after)}, prompts, threads=threads, reps=reps)[QUANT]
            row["decode_speedup"] = {str(t): timed[t]["decode_tps_ratio"] for t in threads}
            after.path.unlink()
            rows.append(row)
    return {"model": loaded.name, "langs": langs, "quant": QUANT, "threads": list(threads), "reps": reps,
            "sources": {s: {"kind": KINDS[s], "package": c.source} for s, c in corpora.items()}, "rows": rows}


def _measure(artifact: Artifact, tokenizer, corpus, corpora: dict, langs: list[str]) -> dict:
    """Kept languages' quality on the evaluation split and on each source beyond the corpus."""
    score = scorer(artifact)
    return {"evaluation": quality(score, tokenizer, corpus, langs),
            "outside": {source: quality(score, tokenizer, c, c.languages) for source, c in corpora.items()}}


def changes(row: dict, original: dict) -> dict:
    """Relative changes against the original: {source: {lang: (tokens, bits per byte)}} and
    {lang: bits per byte} on the evaluation split."""
    def rel(after, before, key):
        return after[key] / before[key] - 1

    outside = {source: {lang: (rel(q, original["outside"][source][lang], "tokens"),
                               rel(q, original["outside"][source][lang], "bits_per_byte"))
                        for lang, q in by_lang.items()}
               for source, by_lang in row["outside"].items()}
    evaluation = {lang: rel(q, original["evaluation"][lang], "bits_per_byte") for lang, q in row["evaluation"].items()}
    return {"outside": outside, "evaluation": evaluation}


def holds(row: dict, original: dict) -> bool:
    """Every kept language on every source within +0.5% tokens and +1% bits per byte."""
    return all(tokens <= GOALS["outside_token_rise"] and bpb <= GOALS["outside_bpb_rise"]
               for by_lang in changes(row, original)["outside"].values() for tokens, bpb in by_lang.values())


def render(result: dict) -> str:
    """A markdown table, one row per size, smallest first, the original last."""
    original, rows = result["rows"][0], sorted(result["rows"][1:], key=lambda r: r["tokens"])
    langs, sources = result["langs"], list(result["sources"])
    threads = result["threads"]
    header = ["tokens", f"{result['quant']} MiB", *(f"decode x, {t} thr" for t in threads),
              *(f"{lang} bpb, evaluation" for lang in langs),
              *(f"{lang} {source}: tokens / bpb / same tokens" for source in sources for lang in langs),
              f"within +{GOALS['outside_token_rise']:.1%} tokens, +{GOALS['outside_bpb_rise']:.0%} bpb"]
    body = []
    for row in rows:
        change = changes(row, original)
        body.append([f"{row['tokens']:,}" + (" (default)" if row["size"] == "default" else ""),
                     f"{row['file_bytes'] / 2**20:.0f} ({row['file_bytes'] / original['file_bytes']:.0%})",
                     *(f"{row['decode_speedup'][str(t)]:.2f}" for t in threads),
                     *(f"{change['evaluation'][lang]:+.2%}" for lang in langs),
                     *(f"{change['outside'][s][lang][0]:+.2%} / {change['outside'][s][lang][1]:+.2%} / "
                       f"{row['agreement'][s][lang]:.1%}" if lang in change["outside"][s] else "" for s in sources for lang in langs),
                     "yes" if holds(row, original) else "no"])
    body.append([f"{original['tokens']:,} (original)", f"{original['file_bytes'] / 2**20:.0f} (100%)",
                 *("1.00" for _ in threads), *("" for _ in langs), *("" for _ in sources for _ in langs), ""])
    named = "; ".join(f"{s}: {v['kind']} ({v['package']})" for s, v in result["sources"].items())
    return (f"llama.cpp, {result['quant']}, each size against the original (decode speed-up: median of {result['reps']} "
            f"interleaved runs). Changes are relative to the original; \"same tokens\": the share of the original's "
            f"tokens the trimmed tokenizer reproduces. Text beyond the corpus, never read by the selection: {named}.\n\n"
            + markdown_table(header, body) + "\n")


def write_frontier(ctx, sizes: list[int | None], folder: Path, threads=(2,), reps: int = 3) -> Path:
    """Measure and write `vocab-frontier.json` and `.md` into folder; returns the .md path."""
    if any(size is not None and size < 2 for size in sizes):
        raise UserError(f"bench-vocab sizes {sizes}: each a number of tokens")
    result = frontier(ctx, sizes, threads, reps)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab-frontier.json").write_text(json.dumps(result, indent=1))
    (folder / "vocab-frontier.md").write_text(f"# Vocabulary frontier: {result['model']}, kept {', '.join(ctx.options.langs)}"
                                              f"\n\n{render(result)}")
    return folder / "vocab-frontier.md"
