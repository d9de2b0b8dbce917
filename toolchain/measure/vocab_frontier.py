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
import time
from pathlib import Path

from ..cuts.plan import trim_vocab, vocab_evidence
from ..cuts.vocab import trim_embeddings
from ..data.outside_text import KINDS, outside_corpora
from ..export.export_gguf import export_gguf, quantize_gguf
from ..model.tokenizer import tokenizer_from_vocab
from ..paths import written
from ..report.frontier import render_frontier
from .checks import agreement
from .verify import Artifact, file_size, quality, scorer, speed, speed_prompts

QUANT = "Q4_K_M"


def frontier(ctx, sizes: list[int | None], threads: tuple[int, ...] = (2,), reps: int = 3) -> dict:
    """{"rows": [the original, then one per size, the default (None) as its actual count]} for ctx's
    kept languages. Every size is selected before anything is measured, so a size too small for
    the languages fails at once.

    ctx: an `options.Context` (model, corpus, kept languages); the original's GGUF comes from the
    export's cache (`export_original`)."""
    from ..export.files import export_original

    loaded, langs = ctx.loaded, ctx.options.langs
    vocab, usage = vocab_evidence(ctx)
    trims = [(size, *trim_vocab(vocab, usage, ctx.corpus, langs, size)) for size in sizes]
    original = Artifact("llama.cpp", QUANT, export_original(ctx)[f"gguf {QUANT}"])
    corpora = outside_corpora(langs)
    rows = [{"tokens": len(vocab.tokens), "size": "original", "file_bytes": file_size(original.path),
             **_measure(original, loaded.tokenizer, ctx.corpus, corpora, langs)}]
    with tempfile.TemporaryDirectory(prefix="vocab-frontier-") as tmp:
        for size, keep, trimmed, parts in trims:
            tokenizers = {"before": loaded.tokenizer, "after": tokenizer_from_vocab(trimmed)}
            f16 = export_gguf(trim_embeddings(copy.deepcopy(loaded.model), keep), loaded.gguf, tokenizers["after"],
                              Path(tmp) / f"{len(keep)}-F16.gguf")
            after = Artifact("llama.cpp", QUANT, quantize_gguf(f16, Path(tmp) / f"{len(keep)}-{QUANT}.gguf", QUANT))
            f16.unlink()
            speeds = speed({QUANT: (original, after)}, speed_prompts(tokenizers, ctx.corpus, langs[0]),
                           threads=threads, reps=reps)[QUANT]
            rows.append({"tokens": len(keep), "size": size or "default", "parts": parts, "file_bytes": file_size(after.path),
                         **_measure(after, tokenizers["after"], ctx.corpus, corpora, langs),
                         "agreement": {source: {lang: a["share"] for lang, a in agreement(tokenizers, keep, corpus, langs).items()}
                                       for source, corpus in corpora.items()},
                         "decode_speedup": {str(t): speeds[t]["decode_tps_ratio"] for t in threads}})
            after.path.unlink()
    return {"model": loaded.name, "langs": langs, "measured": time.strftime("%Y-%m-%d %H:%M"), "quant": QUANT,
            "threads": list(threads), "reps": reps,
            "sources": {s: {"kind": KINDS[s], "package": c.source} for s, c in corpora.items()}, "rows": rows}


def _measure(artifact: Artifact, tokenizer, corpus, corpora: dict, langs: list[str]) -> dict:
    """Kept languages' quality on the evaluation split and on each source beyond the corpus."""
    score = scorer(artifact)
    return {"evaluation": quality(score, tokenizer, corpus, langs),
            "outside": {source: quality(score, tokenizer, c, c.languages) for source, c in corpora.items()}}


def write_frontier(ctx, sizes: list[int | None], folder: Path, threads=(2,), reps: int = 3) -> Path:
    """Measure, then write `vocab-frontier.json` and `.md` as folder (whole, or not at all); the .md's path."""
    result = frontier(ctx, sizes, threads, reps)
    with written(folder) as partial:
        partial.mkdir()
        (partial / "vocab-frontier.json").write_text(json.dumps(result, indent=1))
        (partial / "vocab-frontier.md").write_text(f"# Vocabulary frontier: {result['model']}, kept {', '.join(result['langs'])}"
                                                   f"\n\n{render_frontier(result)}")
    return folder / "vocab-frontier.md"
