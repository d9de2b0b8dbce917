"""What FFN neurons are worth per language, and which go under a layout.

Addressing, masking and pruning are the cut interface's (`model.parts.NEURONS`: neuron j is row j of
gate_proj and up_proj and column j of down_proj). Per language, on calibration text, each neuron gets
- its activation frequency: the share of tokens with act(gate_proj(x))_j > 0 (LAPE, "Unraveling
  Babel"), and the LAPE entropy of those frequencies across languages (low: language-specific);
- its mean contribution: the mean of |h_j| * ||down_proj.weight[:, j]||, the expected size of what
  it adds to the layer's output (Wanda-style).
Selection keeps each layer's highest-scoring neurons (`neuron_scores`: the kept languages' mean
contribution).
"""

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..data.corpus import Corpus, calibration_ids
from ..errors import UserError
from ..model.parts import NEURONS, Selection
from ..paths import cache_entry, cached, code_version
from .analyze import lape_entropy


# -- statistics ---------------------------------------------------------------------------
@dataclass
class NeuronStats:
    languages: list[str]
    frequency: np.ndarray  # [language, layer, neuron]: share of tokens with act(gate(x)) > 0
    contribution: np.ndarray  # [language, layer, neuron]: mean |h_j| * ||down_proj[:, j]||
    tokens: dict[str, int]  # tokens measured per language (BOS positions left out)
    seconds: float = 0.0
    settings: dict = field(default_factory=dict)

    @property
    def entropy(self) -> np.ndarray:
        """[layer, neuron] LAPE entropy of the frequencies across languages, in [0, 1]."""
        return lape_entropy(self.frequency)

    def save(self, path: Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"languages": self.languages, "tokens": self.tokens, "seconds": self.seconds, "settings": self.settings}
        with open(path, "wb") as f:
            np.savez_compressed(f, frequency=self.frequency, contribution=self.contribution, meta=json.dumps(meta))
        return path

    @classmethod
    def load(cls, path: Path) -> "NeuronStats":
        with np.load(path) as data:
            meta = json.loads(str(data["meta"]))
            return cls(frequency=data["frequency"], contribution=data["contribution"], **meta)


@torch.no_grad()
def _measure(model, chunks: list[list[int]], skip: int, progress=None) -> tuple[np.ndarray, np.ndarray, int]:
    """Summed (activation > 0) and summed |h| per [layer, neuron] over the chunks' tokens."""
    mlps = NEURONS.modules(model)
    active = torch.zeros(len(mlps), mlps[0].up_proj.out_features, dtype=torch.float64)
    magnitude = torch.zeros_like(active)

    def count_active(layer: int):
        def hook(_module, _args, gate):
            active[layer] += (mlps[layer].act_fn(gate[0, skip:]) > 0).sum(0)

        return hook

    def add_magnitude(layer: int, h: torch.Tensor) -> None:  # h: [1, seq, width, 1]
        magnitude[layer] += h[0, skip:, :, 0].abs().sum(0)

    handles = [mlp.gate_proj.register_forward_hook(count_active(i)) for i, mlp in enumerate(mlps)]
    tokens = 0
    try:
        with NEURONS.hooked(model, add_magnitude):
            for ids in chunks:
                model.model(input_ids=torch.tensor([ids]), use_cache=False)
                tokens += len(ids) - skip
                if progress:
                    progress.update(len(ids) - skip)
    finally:
        for handle in handles:
            handle.remove()
    return active.numpy(), magnitude.numpy(), tokens


def neuron_stats(model, tokenizer, corpus: Corpus, langs: Sequence[str], n_tokens: int = 2048,
                 chunk_tokens: int = 512, progress=None) -> NeuronStats:
    """Activation frequency and mean contribution of every neuron, per language (calibration split)."""
    widths = NEURONS.sizes(model)
    if len(set(widths)) != 1:
        raise ValueError("neuron statistics run on the original model (the same FFN width in every layer)")
    column_norms = np.stack([mlp.down_proj.weight.detach().float().norm(dim=0).numpy()
                             for mlp in NEURONS.modules(model)])
    skip = 1 if tokenizer.bos_token_id is not None else 0  # BOS: the same token in every chunk
    start = time.perf_counter()
    freq, contrib, tokens = [], [], {}
    for lang in langs:
        chunks = calibration_ids(tokenizer, corpus, lang, n_tokens, chunk_tokens)
        active, magnitude, tokens[lang] = _measure(model, chunks, skip, progress)
        freq.append(active / tokens[lang])
        contrib.append(magnitude / tokens[lang] * column_norms)
    settings = {"n_tokens": n_tokens, "chunk_tokens": chunk_tokens, "code": code_version(__name__)}
    return NeuronStats(list(langs), np.stack(freq), np.stack(contrib), tokens, time.perf_counter() - start, settings)


def cache_path(model_fingerprint: str, corpus: Corpus, langs: Sequence[str], n_tokens: int, chunk_tokens: int) -> Path:
    settings = hashlib.sha256(json.dumps([list(langs), n_tokens, chunk_tokens]).encode()).hexdigest()[:12]
    return cache_entry("neurons", (model_fingerprint, corpus.fingerprint(), settings), (__name__,), ".npz")


def neuron_stats_cached(model, tokenizer, corpus: Corpus, langs: Sequence[str], model_fingerprint: str,
                        n_tokens: int = 2048, chunk_tokens: int = 512, progress=None) -> tuple[NeuronStats, bool]:
    """The statistics from cache when model, corpus and settings match; else computed and cached."""
    def make(path: Path) -> None:
        neuron_stats(model, tokenizer, corpus, langs, n_tokens, chunk_tokens, progress).save(path)

    return cached(cache_path(model_fingerprint, corpus, langs, n_tokens, chunk_tokens), make, NeuronStats.load)


# -- selection ----------------------------------------------------------------------------
def neuron_scores(stats: NeuronStats, keep_langs: Sequence[str]) -> list[np.ndarray]:
    """Per layer, the value of keeping each neuron (higher: keep): the largest mean contribution
    to a kept language.

    Measured on Gemma 3 270M keeping en+de (held-out bits/byte, 1/8 of every layer's neurons
    dropped): contribution +27% en / +7% de; activation frequency +119% / +88%, worse than random
    neurons (+91% / +81%), since rarely firing neurons include ones with large outputs. Subtracting
    0.25 x the other languages' mean contribution cost the kept languages 1-4% more and the dropped
    ones far more (mean +91% instead of +24%). A first-order loss
    estimate (|sum of h * dloss/dh|, a backward pass per chunk) did no better: +22% / +7%.
    """
    missing = [lang for lang in keep_langs if lang not in stats.languages]
    if missing:
        raise UserError(f"languages {missing} are not in the neuron statistics ({', '.join(stats.languages)})")
    return list(stats.contribution[[stats.languages.index(lang) for lang in keep_langs]].max(axis=0))


def uniform_width(fraction: float, width: float, multiple: int) -> int:
    """The FFN width every layer keeps at the uniform layout when `fraction` of `width` neurons go: a multiple of
    `multiple` (0 or `width` itself where the fraction rounds to every neuron or to none)."""
    return round((1 - fraction) * width / multiple) * multiple


def select_neurons(scores: Sequence[np.ndarray], fraction: float, layout: str,
                   multiple: int | None = None) -> Selection:
    """The neurons kept per layer (sorted indices), dropping about `fraction` of all neurons.

    uniform: the same width in every layer, a multiple of `multiple` (default 256, so llama.cpp's
    K-quants still fit ffn_down's rows); each layer drops its lowest-scoring neurons.
    free: per-layer widths, multiples of `multiple` (default 32), from a global ranking of scores
    normalized per layer (mean 1); every layer keeps at least `multiple` neurons.
    `fraction` is in (0, 1): `preflight.check_fraction` holds every caller's.
    """
    widths = [len(s) for s in scores]
    if layout == "uniform":
        multiple = multiple or 256
        width = uniform_width(fraction, np.mean(widths), multiple)
        if width <= 0:
            raise UserError(f"dropping {fraction:.0%} of the FFN neurons would remove every neuron "
                            f"(widths are multiples of {multiple})")
        if width >= max(widths):
            raise UserError(f"dropping {fraction:.0%} of the FFN neurons drops none at the uniform layout "
                            f"(widths are multiples of {multiple}); raise the fraction")
        if width > min(widths):
            raise UserError(f"the uniform layout needs every layer {width} wide; the layers are {widths}")
        kept = [np.argsort(-s, kind="stable")[:width] for s in scores]
    elif layout == "free":
        kept = _free_keep(scores, fraction, multiple or 32)
    else:
        raise UserError(f"unknown layout {layout!r} (free, uniform)")
    return Selection([sorted(int(i) for i in k) for k in kept], widths, layout)


def _free_keep(scores: Sequence[np.ndarray], fraction: float, multiple: int) -> list[np.ndarray]:
    """Drop steps of `multiple` neurons, cheapest first (a step costs its neurons' mean normalized score)."""
    order = [np.argsort(s, kind="stable") for s in scores]  # lowest first
    normalized = [s[o] / (np.abs(s).mean() + 1e-12) for s, o in zip(scores, order)]
    total = sum(len(s) for s in scores)
    target = round(fraction * total / multiple) * multiple
    droppable = sum(max(0, len(s) - multiple) for s in scores)
    if target == 0:
        raise UserError(f"dropping {fraction:.0%} of the FFN neurons drops none (steps of {multiple}); "
                        "raise the fraction")
    if target > droppable:
        raise UserError(f"dropping {fraction:.0%} of the FFN neurons would leave a layer without {multiple} neurons; "
                        f"at most {droppable} of {total} can go")
    dropped = [0] * len(scores)

    def step(layer: int) -> int:  # the next drop leaves a multiple (a first step drops any remainder)
        remainder = len(scores[layer]) % multiple
        return remainder if dropped[layer] == 0 and remainder else multiple

    while sum(dropped) < target:
        candidates = [(normalized[i][dropped[i] : dropped[i] + step(i)].mean(), i) for i in range(len(scores))
                      if len(scores[i]) - dropped[i] - step(i) >= multiple]
        layer = min(candidates)[1]
        dropped[layer] += step(layer)
    return [o[d:] for o, d in zip(order, dropped)]
