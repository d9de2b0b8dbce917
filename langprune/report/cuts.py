"""The report's account of the cuts: what went (heads, FFN widths, vocabulary, recovery) and the tolerance
search that chose them."""

import json

from .tables import markdown_table


def _tokenization_text(report: dict) -> str:
    agreement = report.get("tokenization")
    if not agreement:
        return "The vocabulary is untouched."
    per_lang = ", ".join(f"{lang} {a['share']:.2%} of {a['tokens']} tokens" for lang, a in agreement.items())
    parts = report["vocab"].get("parts") or {}
    chosen = ", ".join(f"{part} {n}" for part, n in parts.items() if part != "total" and n)
    return (f"{report['vocab']['kept_tokens']} tokens kept ({chosen}). The evaluation text of the kept languages "
            f"tokenizes to the same sequence as with the full vocabulary (mapped ids) for: {per_lang}.")


def cuts_text(report: dict) -> list[str]:
    a = report["structure"]["after"]
    parts = ["## What was cut (totals in the summary)",
             "Heads per layer: " + ", ".join(map(str, a["heads_per_layer"])),
             "FFN width per layer: " + ", ".join(map(str, a["ffn_per_layer"])),
             _tokenization_text(report)]
    if report["options"].get("heads") == 0:
        parts.append(_heads_kept_text(report))
    if report["heads"]:
        dropped = ", ".join(f"({layer},{h})" for layer, h in report["heads"]["dropped"])
        parts.append("Removed heads (layer, head): " + dropped
                     # exports made before the option existed were not refit
                     + (" (o_proj refit to the kept heads)" if report["options"].get("refit") else ""))
    if report.get("heal"):
        h = report["heal"]
        parts.append(f"Recovery (HEAL={report['options']['heal']}): distilled from the original for {h['seconds']:.0f} "
                     f"s, {h['steps']} steps over {h['tokens']:,} tokens of kept-language text; KL to the original "
                     f"{h['kl_first']:.4f} -> {h['kl_last']:.4f} nats a token (first and last pass, on that text)."
                     + _heal_check_text(h, report.get("tolerance_search")))
    if report["analysis"]:
        parts += ["![heads](heatmap.png)", "Agreement of the head analysis methods (Spearman, mean over languages): "
                  + ", ".join(f"{k} {v:.2f}" for k, v in report["analysis"]["agreement"].items())]
    return parts


def _heads_kept_text(report: dict) -> str:
    """Why every head stayed when none was asked to go (HEADS=0, or no HEADS, FFN nor TOL given)."""
    text = "Every head kept: heads are analysed and cut only when asked (HEADS=<fraction>, or TOL=<tol>)."
    ceiling = report.get("ceiling")
    if not ceiling or "attention projections" not in ceiling["parts"]["after"]:
        return text
    share = ceiling["parts"]["after"]["attention projections"]["bytes"] / ceiling["bytes_after"]
    return (text + f" The attention projections are {share:.1%} of the weights read per generated token here "
            f"({ceiling['file']}), so no head cut could speed decoding by more than {1 / (1 - share):.2f}x.")


def _heal_check_text(h: dict, search: dict | None) -> str:
    """The calibration perplexity before and after the distillation, and whether it was kept (older reports: none)."""
    if "perplexity_after" not in h:
        return ""
    text = " Calibration perplexity " + ", ".join(
        f"{lang} {h['perplexity_before'][lang]:.3f} -> {h['perplexity_after'][lang]:.3f}"
        for lang in h["perplexity_after"])
    if not h["kept"]:
        return text + f": beyond TOL={search['tol']} after it, so the distillation was undone."
    return text + "."


def search_text(report: dict) -> list[str]:
    t = report.get("tolerance_search")
    if not t:
        return []
    iterative = t.get("mode") == "iterative"
    # a probe's size: "size" since SEARCH=iterative; older reports (re-rendered by `make bench`) say fraction or heads
    rows = [((p["round"],) if iterative else ()) + (p["cut"], p.get("size", p.get("fraction", p.get("heads"))),
             json.dumps({k: round(v, 3) for k, v in p["perplexity"].items()}), p["within_tolerance"])
            for p in t["probes"]]
    how = (f"Iterative (SEARCH=iterative): each round re-scores every unit on the model as cut so far and measures "
           f"each part's next step; the step within TOL that costs least per multiply-add is accepted. {t['rounds']} "
           f"rounds in {t['seconds']:.0f} s." if iterative else "FFN first, then heads on top of the FFN cut.")
    outside = (f" Text beyond the corpus (its selection sample: {', '.join(t['outside'])}) is held to "
               f"+{t['outside_bpb_rise']:.0%} bits per byte." if t.get("outside") else "")
    baseline = json.dumps({k: round(v, 3) for k, v in t["baseline"].items()})
    return ["## Tolerance search (perplexity with the cuts masked)",
            f"TOL={t['tol']} on the calibration text; baseline {baseline}.{outside} {how}",
            markdown_table((["round"] if iterative else [])
                           + ["cut", "fraction / heads", "perplexity", "within tolerance"], rows)]
