"""How far the cheap head-masking scores are from the exact float32 ones (`make bench-masking`).

The analysis's masking runs may compute the 262k-row output layer in bfloat16 (where this CPU
multiplies it fast, `precision.py`) and only for candidate tokens (`losses.CandidateLosses`).
This masks every head once per variant on the analysis's own calibration tokens and compares each
variant's per-language ranking of heads with exact float32 masking: Spearman over all heads and
the overlap of the 8 heads that matter most. bfloat16 runs only where it is fast: elsewhere it
is emulated and would take hours.
"""

import time

import numpy as np
import torch

from ..analysis.analyze import Settings, masking_chunks, spearman
from ..analysis.masking import masking_deltas
from ..analysis.precision import output_layer_precision
from ..data.corpus import Corpus
from ..log import progress
from ..model.parts import HEADS

TOP = 8


def top_overlap(a: np.ndarray, b: np.ndarray, k: int = TOP) -> int:
    """How many of a's k largest entries are among b's k largest."""
    return len(set(np.argsort(-a)[:k]) & set(np.argsort(-b)[:k]))


def compare_masking(model, tokenizer, corpus: Corpus, settings: Settings) -> dict:
    """{"seconds": {variant: s}, "agreement": {variant: {lang: {"spearman", "top8"}}}, "precision": str}."""
    langs = list(settings.languages)
    chunks = masking_chunks(tokenizer, corpus, settings)
    precision = output_layer_precision()
    variants = [("exact", torch.float32), ("candidates", torch.float32)]
    if precision.dtype == torch.bfloat16:
        variants += [("exact", torch.bfloat16), ("candidates", torch.bfloat16)]
    deltas, seconds = {}, {}
    for output, dtype in variants:
        name = f"{output} {str(dtype).removeprefix('torch.')}"
        start = time.perf_counter()
        with progress(total=sum(HEADS.sizes(model)), desc=f"masking, {name}", unit="head") as bar:
            deltas[name], _ = masking_deltas(model, chunks, bar, output, settings.candidate_top, dtype)
        seconds[name] = round(time.perf_counter() - start, 1)
    reference = deltas.pop("exact float32")
    agreement = {
        name: {lang: {"spearman": spearman(reference[i].ravel(), d[i].ravel()),
                      "top8": top_overlap(reference[i].ravel(), d[i].ravel())} for i, lang in enumerate(langs)}
        for name, d in deltas.items()
    }
    return {"seconds": seconds, "agreement": agreement, "precision": str(precision)}
