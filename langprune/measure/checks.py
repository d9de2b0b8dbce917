"""The export's checks, original against pruned: quality per language in PyTorch and in each
runtime, language fidelity, speed, and text beyond the corpus."""

from pathlib import Path

import torch

from ..cuts.tolerance import Cuts
from ..data.evaluate import torch_scorer
from ..options import ExportOptions, eval_languages, quant_files
from ..timing import timed


def pytorch_quality(models: dict, tokenizers: dict, corpus, options: ExportOptions) -> dict:
    """Each side's quality per kept language in PyTorch (float32), `models` and `tokenizers` by side: the checks'
    one use of the PyTorch models, run before the runtimes' so that those never share the machine with them."""
    from .verify import quality

    torch.set_num_threads(2)
    kept, _ = eval_languages(options)
    return {side: quality(torch_scorer(model), tokenizers[side], corpus, kept) for side, model in models.items()}


def verify(torch_quality: dict, tokenizers: dict, files: dict, corpus, options: ExportOptions, cuts: Cuts,
           choice: dict | None, given: Path) -> dict:
    """The checks' figures in the runtimes, beside `torch_quality` (`pytorch_quality`'s); `tokenizers` and `files` by
    side ("before": the original, "after"), `options` for the languages, quantizations and speed runs, QUANT=auto's
    `choice` (or None), the `given` model's GGUF file (`pipeline.given_file`), measured beside the deployed file;
    results["seconds"] and results["peaks"]: the time and this process's peak memory (MB) of each check."""
    from .verify import deployed_file, measure_exports

    kept, dropped = eval_languages(options)
    before, after = files["before"], files["after"]
    deployed = choice["file"] if choice else deployed_file(after, quant_files(options))
    results = measure_exports(tokenizers, corpus, kept, dropped, before, after, deployed, options.reps,
                              options.threads, given)
    results["choice"] = {key: value for key, value in choice.items() if key != "path"} if choice else None  # files
    results["quality"] = {"pytorch fp32": torch_quality, **results["quality"]}
    with timed(results["seconds"], "beyond the corpus", results["peaks"]):
        results["outside"] = verify_outside(cuts, tokenizers, kept, dropped, before, after, results["deployed"],
                                            given)
    if cuts.tokens:
        results["tokenization"] = agreement(tokenizers, cuts.tokens, corpus, kept)
    return results


def verify_outside(cuts: Cuts, tokenizers: dict, kept: list[str], dropped: list[str], before: dict, after: dict,
                   key: str, given: Path | None = None) -> dict:
    """On text the selection never read: the kept languages' quality in `key` (and, with a trimmed
    vocabulary, their tokenization), and the dropped languages' token counts.

    The dropped languages are counted, not scored: their loss is on the evaluation split, and a
    trimmed vocabulary spells another script in 2.3-5.2x the tokens (en,de: zh 2.3-2.5x, ja 3.6x,
    ru 4.2-5.2x), each through the output layer; scoring them took this check from 88 s to 152 s
    (cold, AVX2 caps)."""
    from ..data.evaluate import scored_tokens
    from ..data.outside_text import KINDS, outside_corpora
    from .verify import outside_quality

    corpora = outside_corpora(kept + dropped)
    counted = {source: {side: {lang: scored_tokens(tokenizer, corpus.texts[lang]["evaluation"])
                               for lang in corpus.languages if lang in dropped}
                        for side, tokenizer in tokenizers.items()}
               for source, corpus in corpora.items()}
    out = {"file": key, "sources": {s: {"kind": KINDS[s], "package": c.source} for s, c in corpora.items()},
           "quality": outside_quality(corpora, tokenizers, key, before, after, kept, given),
           "dropped_tokens": counted}
    if cuts.tokens:
        out["tokenization"] = {source: agreement(tokenizers, cuts.tokens, corpus, kept)
                               for source, corpus in corpora.items()}
    return out


def agreement(tokenizers: dict, tokens: list[int], corpus, langs: list[str]) -> dict:
    """Per language the corpus has: how the trimmed tokenizer agrees with the original on its evaluation text."""
    from ..cuts.trim import tokenization_agreement

    return {lang: tokenization_agreement(tokenizers["before"], tokenizers["after"], tokens,
                                         corpus.texts[lang]["evaluation"])
            for lang in langs if lang in corpus.languages}
