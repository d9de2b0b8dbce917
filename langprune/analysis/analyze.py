"""Per-language importance of every attention head, three ways, on the calibration split.

- gradient: |d loss / d mask| for a per-head mask of ones, summed over chunks of text
  (one backward pass scores every head at once);
- activation: how often a head's contribution to the residual stream (the norm of its o_proj
  output) is above that head's own threshold, the `quantile` of its norms over all languages'
  tokens; plus the LAPE-style entropy of those frequencies across languages;
- masking: the change in a language's mean loss when the head's output is zeroed. Hidden states
  entering each layer are computed once; a masked run starts from them and recomputes only the
  layers from the masked one on. The 262k-row output layer is not recomputed per head: the
  plausible tokens' logits are exact and the rest of the vocabulary enters to first order
  (`CandidateLosses`); `masking_output="exact"` computes every logit instead.

Each method's scores are normalized per language (mean over heads = 1) and combined into an
importance per language; specificity is how much more a head matters to a language than to
the others. Results are cached by model, corpus and settings fingerprints.
"""

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..data.corpus import Corpus, calibration_ids
from ..log import progress
from ..model.parts import HEADS
from ..paths import cache_entry, cached
from .losses import frozen, mean_loss
from .masking import masking_deltas
from .precision import output_layer_precision

METHODS = ("masking", "gradient", "activation")


@dataclass(frozen=True)
class Settings:
    languages: tuple[str, ...]
    tokens_per_language: int = 512  # calibration tokens for gradient and activation scores
    masking_tokens: int = 128  # calibration tokens per language for exact masking
    chunk_tokens: int = 256
    quantile: float = 0.9  # per-head activation threshold over all languages' tokens
    # How the masking runs get the loss from the final hidden states: "candidates" (exact logits
    # for the union of every position's top `candidate_top` tokens and the targets, the rest of the
    # vocabulary to first order) or "exact" (all 262k logits per masked head). Measured for all 72
    # heads of Gemma 3 270M in float32: 466 s against 1130 s (`make bench-masking`, 2 loaded cores).
    # tests/test_analysis_real.py bounds the difference to exact float32 deltas.
    masking_output: str = "candidates"
    candidate_top: int = 64
    method_version: int = 4  # the scores' method, recorded in analysis.json (cache keys also hold the code's hash)

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]


@dataclass
class Analysis:
    languages: list[str]
    layers: int
    heads: int
    scores: dict[str, np.ndarray]  # method -> [language, layer, head]
    base_loss: dict[str, float]  # mean calibration loss per language (masking tokens)
    entropy: np.ndarray  # [layer, head] LAPE entropy of activation frequencies, in [0, 1]
    settings: Settings
    model_fingerprint: str
    corpus_fingerprint: str
    seconds: dict[str, float] = field(default_factory=dict)
    precision: str = ""  # the output layer's matmul precision in the masking runs, and why

    # -- derived scores -------------------------------------------------------------------
    def normalized(self, method: str) -> np.ndarray:
        """Scores divided by each language's mean absolute score over heads."""
        s = self.scores[method]
        return s / (np.abs(s).mean(axis=(1, 2), keepdims=True) + 1e-12)

    def importance(self) -> np.ndarray:
        """[language, layer, head]: the mean of the loss-based methods (masking, gradient), normalized."""
        return (self.normalized("masking") + self.normalized("gradient")) / 2

    def specificity(self) -> np.ndarray:
        """[language, layer, head]: importance to a language minus its mean importance to the others."""
        imp = self.importance()
        others = (imp.sum(axis=0, keepdims=True) - imp) / (len(self.languages) - 1)
        return imp - others

    def agreement(self) -> dict[str, float]:
        """Spearman rank correlation between methods, per language, averaged."""
        out = {}
        for i, a in enumerate(METHODS):
            for b in METHODS[i + 1 :]:
                rho = [spearman(self.scores[a][k].ravel(), self.scores[b][k].ravel())
                       for k in range(len(self.languages))]
                out[f"{a}~{b}"] = float(np.mean(rho))
        return out

    def masking_setup(self) -> str:
        return f"masking output layer: {self.settings.masking_output}, precision {self.precision}"

    def index(self, lang: str) -> int:
        return self.languages.index(lang)

    # -- persistence ----------------------------------------------------------------------
    def to_json(self) -> dict:
        return {
            "model_fingerprint": self.model_fingerprint,
            "corpus_fingerprint": self.corpus_fingerprint,
            "settings": asdict(self.settings),
            "languages": self.languages,
            "layers": self.layers,
            "heads": self.heads,
            "base_loss": self.base_loss,
            "scores": {m: self.scores[m].tolist() for m in METHODS},
            "entropy": self.entropy.tolist(),
            "specificity": self.specificity().tolist(),
            "agreement": self.agreement(),
            "seconds": self.seconds,
            "precision": self.precision,
        }

    @classmethod
    def from_json(cls, data: dict) -> "Analysis":
        settings = data["settings"]
        return cls(
            languages=data["languages"],
            layers=data["layers"],
            heads=data["heads"],
            scores={m: np.array(data["scores"][m]) for m in METHODS},
            base_loss=data["base_loss"],
            entropy=np.array(data["entropy"]),
            settings=Settings(**{**settings, "languages": tuple(settings["languages"])}),
            model_fingerprint=data["model_fingerprint"],
            corpus_fingerprint=data["corpus_fingerprint"],
            seconds=data.get("seconds", {}),
            precision=data.get("precision", ""),
        )

    def save(self, path: Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json()))
        return path


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


# -- gradient and activation --------------------------------------------------------------
def gradient_and_activation(model, chunks: dict[str, list[list[int]]], progress=None):
    """Per language: summed |d loss/d mask| per head, and every token's per-head output norm."""
    counts = HEADS.sizes(model)
    o_weights = [attn.o_proj.weight.detach() for attn in HEADS.modules(model)]
    grads, norms = {}, {}
    for lang, lang_chunks in chunks.items():
        grad = torch.zeros(len(counts), max(counts))
        lang_norms = []
        for ids in lang_chunks:
            mask = [torch.ones(n, requires_grad=True) for n in counts]
            layer_norms = {}

            def record(layer, heads, layer_norms=layer_norms):
                w = o_weights[layer].float().view(o_weights[layer].shape[0], counts[layer], -1)
                contribution = torch.einsum("bshd,ohd->bsho", heads.detach(), w)
                layer_norms[layer] = contribution.norm(dim=-1)[0]  # [seq, heads]

            with frozen(model), HEADS.masked(model, mask), HEADS.hooked(model, record):
                mean_loss(model, ids).backward()
            for layer, m in enumerate(mask):
                grad[layer, : counts[layer]] += m.grad.abs() * (len(ids) - 1)
            lang_norms.append(torch.stack([layer_norms[layer] for layer in range(len(counts))], dim=1))
            if progress:
                progress.update(len(ids))
        grads[lang] = grad.numpy()
        norms[lang] = torch.cat(lang_norms).numpy()  # [tokens, layer, head]
    return grads, norms


def activation_frequency(norms: dict[str, np.ndarray], quantile: float) -> tuple[np.ndarray, np.ndarray]:
    """Frequencies [language, layer, head] above each head's pooled quantile, and their entropy."""
    per_lang = min(len(n) for n in norms.values())  # equal weight per language in the threshold
    pooled = np.concatenate([n[:per_lang] for n in norms.values()])
    threshold = np.quantile(pooled, quantile, axis=0)
    freq = np.stack([(n > threshold).mean(axis=0) for n in norms.values()])
    return freq, lape_entropy(freq)


def lape_entropy(frequency: np.ndarray) -> np.ndarray:
    """The entropy across languages (axis 0) of each unit's activation frequencies, normalized to [0, 1]: low
    where a unit fires for few languages (LAPE, Tang et al. 2024)."""
    p = frequency / (frequency.sum(axis=0, keepdims=True) + 1e-12)
    return -(p * np.log(p + 1e-12)).sum(axis=0) / np.log(len(frequency))


# -- the stage ----------------------------------------------------------------------------
def masking_chunks(tokenizer, corpus: Corpus, settings: Settings) -> dict[str, list[int]]:
    """Per language, the one chunk of calibration text that the masking runs score."""
    return {lang: calibration_ids(tokenizer, corpus, lang, settings.masking_tokens, settings.masking_tokens + 1)[0]
            for lang in settings.languages}


def analyze(model, tokenizer, corpus: Corpus, settings: Settings, model_fingerprint: str) -> Analysis:
    counts = HEADS.sizes(model)
    if len(set(counts)) != 1:
        raise ValueError("analysis runs on the original model (same head count in every layer)")
    langs = list(settings.languages)
    cheap = {
        lang: calibration_ids(tokenizer, corpus, lang, settings.tokens_per_language, settings.chunk_tokens)
        for lang in langs
    }
    exact = masking_chunks(tokenizer, corpus, settings)
    seconds = {}
    start = time.perf_counter()
    total = sum(len(c) for chunks in cheap.values() for c in chunks)
    with progress(total=total, desc="gradient + activation", unit="tok") as bar:
        grads, norms = gradient_and_activation(model, cheap, bar)
    freq, entropy = activation_frequency(norms, settings.quantile)
    seconds["gradient_activation"] = time.perf_counter() - start

    start = time.perf_counter()
    precision = output_layer_precision()
    with progress(total=sum(counts), desc=f"head masking ({settings.masking_output} output layer)", unit="head") as bar:
        deltas, base = masking_deltas(model, exact, bar, settings.masking_output, settings.candidate_top,
                                      precision.dtype)
    seconds["masking"] = time.perf_counter() - start

    return Analysis(
        languages=langs,
        layers=len(counts),
        heads=counts[0],
        scores={"masking": deltas, "gradient": np.stack([grads[lang] for lang in langs]), "activation": freq},
        base_loss=base,
        entropy=entropy,
        settings=settings,
        model_fingerprint=model_fingerprint,
        corpus_fingerprint=corpus.fingerprint(),
        seconds=seconds,
        precision=str(precision),
    )


def cache_path(model_fingerprint: str, corpus: Corpus, settings: Settings) -> Path:
    """Keyed by model, corpus, settings, the analysis modules' code and the output layer's precision on this machine
    (a forced LANGPRUNE_PRECISION gets its own analysis, not one computed in the other precision; how the precision
    is chosen is not in the key: the choice is)."""
    inputs = (model_fingerprint, corpus.fingerprint(), settings.fingerprint(), output_layer_precision().name)
    return cache_entry("analysis", inputs, (__name__, "langprune.analysis.losses", "langprune.analysis.masking"),
                       ".json")


def analyze_cached(model, tokenizer, corpus: Corpus, settings: Settings,
                   model_fingerprint: str) -> tuple[Analysis, bool]:
    """The analysis from cache when model, corpus, settings and precision match; else computed and cached."""
    return cached(cache_path(model_fingerprint, corpus, settings),
                  lambda path: analyze(model, tokenizer, corpus, settings, model_fingerprint).save(path),
                  lambda path: Analysis.from_json(json.loads(path.read_text())))
