"""Heatmaps: layers by heads, one panel per language and method."""

from pathlib import Path

import numpy as np

from ..analysis.analyze import METHODS, Analysis

TITLES = {
    "masking": "Δ loss when masked",
    "gradient": "|∂ loss / ∂ mask|",
    "activation": "activation frequency",
    "specificity": "specificity",
}


def heatmap(analysis: Analysis, path: Path, dropped: list[tuple[int, int]] | None = None) -> Path:
    """One row per method (and specificity), one column per language; dropped heads marked ×."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = {m: analysis.scores[m] for m in METHODS}
    rows["specificity"] = analysis.specificity()
    n_lang = len(analysis.languages)
    fig, axes = plt.subplots(
        len(rows), n_lang, figsize=(1.1 * n_lang + 1.5, 0.22 * analysis.layers * len(rows) + 1.5), squeeze=False
    )
    for r, (method, scores) in enumerate(rows.items()):
        signed = method in ("masking", "specificity")
        vmax = float(np.percentile(np.abs(scores), 99)) or 1.0
        for c, lang in enumerate(analysis.languages):
            ax = axes[r, c]
            image = ax.imshow(
                scores[c], aspect="auto", cmap="RdBu_r" if signed else "viridis",
                vmin=-vmax if signed else 0, vmax=vmax, interpolation="nearest",
            )
            for layer, head in dropped or []:
                ax.text(head, layer, "×", ha="center", va="center", fontsize=6, color="black")
            ax.set_xticks(range(analysis.heads))
            ax.set_xticklabels(range(analysis.heads), fontsize=5)
            ax.set_yticks(range(0, analysis.layers, 3))
            ax.set_yticklabels(range(0, analysis.layers, 3), fontsize=5)
            if r == 0:
                ax.set_title(lang, fontsize=9)
            if c == 0:
                ax.set_ylabel(f"{TITLES[method]}\nlayer", fontsize=7)
        fig.colorbar(image, ax=axes[r, :].tolist(), shrink=0.8, pad=0.01)
    fig.suptitle("Attention heads per language (x: head, y: layer)" + (", × = dropped" if dropped else ""), fontsize=10)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
