"""Heatmaps (layers by heads, one panel per language and method) and the alternatives' Pareto plot."""

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


def pareto_plot(alt: dict, path: Path) -> Path:
    """Decode speed (tg128 ratio to the baseline) against the worst kept language beyond the corpus (bits per byte
    against the baseline), one marker per file, its area the file's size; the Pareto front outlined and named."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t, rows = alt["front_threads"], alt["files"]
    fig, ax = plt.subplots(figsize=(8, 5.5))
    for side, color in (("original", "tab:blue"), ("pruned", "tab:orange")):
        names = [name for name, row in rows.items() if row["side"] == side]
        ax.scatter([100 * rows[n]["worst_outside"] for n in names],
                   [rows[n]["speed"][t]["tg128"]["ratio"] for n in names],
                   s=[300 * rows[n]["relative_size"] for n in names], c=color, alpha=0.5, label=side,
                   edgecolors=["black" if n in alt["front"] else "none" for n in names], linewidths=1.5)
    for name in alt["front"]:
        row = rows[name]
        ax.annotate(name + (" (deployed)" if name == alt["deployed"] else ""),
                    (100 * row["worst_outside"], row["speed"][t]["tg128"]["ratio"]), fontsize=7,
                    xytext=(6, 4), textcoords="offset points")
    ax.set_xlabel(f"worst kept language beyond the corpus: bits per byte against {alt['baseline']} (%)")
    ax.set_ylabel(f"tg128 at {t} threads against {alt['baseline']} (x)")
    ax.set_title("Every GGUF file type of both models; marker area: file size; outlined and named: the Pareto front",
                 fontsize=9)
    ax.legend(fontsize=8, markerscale=0.5)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
