"""report.json (every figure) and report.md (the same, for people), original against pruned."""

import json
import math
import statistics
from pathlib import Path



def per_token_weight_bytes(gguf_path: Path) -> int:
    """Bytes of weights read to generate one token: every tensor, except the input embedding
    table when a separate output matrix exists (a lookup reads one row of it)."""
    from gguf import GGUFReader

    tensors = {t.name: int(t.n_bytes) for t in GGUFReader(str(gguf_path)).tensors}
    if "output.weight" in tensors:
        tensors.pop("token_embd.weight", None)
    return sum(tensors.values())


def ceiling(before: Path, after: Path) -> dict:
    b, a = per_token_weight_bytes(before), per_token_weight_bytes(after)
    return {"bytes_before": b, "bytes_after": a, "fraction_removed": 1 - a / b, "speedup_ceiling": b / a}


def _mean(values) -> float:
    return statistics.fmean(values) if values else math.nan


def summary(results: dict) -> list[tuple[str, str, str, str]]:
    """The headline rows: (what, before, after, after/before)."""
    kept, dropped = results["languages"]["kept"], results["languages"]["dropped"]
    rows = []
    for key, runs in results["quality"].items():
        for group, langs in (("kept", kept), ("dropped", dropped)):
            b = _mean([runs["before"][lang]["bits_per_byte"] for lang in langs])
            a = _mean([runs["after"][lang]["bits_per_byte"] for lang in langs])
            rows.append((f"{key}: bits/byte, {group} languages (mean)", f"{b:.4f}", f"{a:.4f}", f"{a / b:.3f}"))
    for key, by_threads in results["speed"].items():
        for threads, row in by_threads.items():
            for metric in ("prefill_tps", "decode_tps"):
                rows.append((
                    f"{key}: {metric.split('_')[0]} tok/s, {threads} thread(s)",
                    f"{row[metric + '_before']:.1f}", f"{row[metric + '_after']:.1f}", f"{row[metric + '_ratio']:.3f}",
                ))
    for key in results["sizes"]["after"]:
        b, a = results["sizes"]["before"][key], results["sizes"]["after"][key]
        rows.append((f"{key}: file size (MB)", f"{b / 1e6:.1f}", f"{a / 1e6:.1f}", f"{a / b:.3f}"))
    return rows


def markdown_table(header: list[str], rows: list) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _quality_rows(results: dict) -> list:
    kept = results["languages"]["kept"]
    rows = []
    for key, runs in results["quality"].items():
        for lang in results["languages"]["kept"] + results["languages"]["dropped"]:
            b, a = runs["before"][lang], runs["after"][lang]
            rows.append((
                key, lang + (" (kept)" if lang in kept else ""),
                f"{b['perplexity']:.2f}", f"{a['perplexity']:.2f}", f"{a['perplexity'] / b['perplexity'] - 1:+.1%}",
                f"{b['bits_per_byte']:.4f}", f"{a['bits_per_byte']:.4f}",
            ))
    return rows


def _speed_rows(results: dict) -> list:
    rows = []
    for key, by_threads in results["speed"].items():
        for threads, r in by_threads.items():
            rows.append((
                key, threads,
                f"{r['prefill_tps_before']:.1f}", f"{r['prefill_tps_after']:.1f}", f"{r['prefill_tps_ratio']:.3f}",
                f"{r['decode_tps_before']:.1f}", f"{r['decode_tps_after']:.1f}", f"{r['decode_tps_ratio']:.3f}",
                f"{r['peak_rss_mb_before']:.0f}", f"{r['peak_rss_mb_after']:.0f}",
            ))
    return rows


def _fidelity_rows(results: dict) -> list:
    return [
        (key, lang, f"{runs['before'][lang]['share']:.0%}", f"{runs['after'][lang]['share']:.0%}",
         runs["after"][lang]["samples"][0]["continuation"].replace("\n", " ").replace("|", "/")[:80])
        for key, runs in results["fidelity"].items() for lang in runs["after"]
    ]


def write_report(folder: Path, ctx, analysis, selection, tolerance, before: dict, after: dict, results: dict) -> None:
    from .pipeline import options_json

    gguf_key = next(k for k in reversed(list(after)) if k.startswith("gguf"))
    report = {
        "model": {"name": ctx.loaded.name, "source": str(ctx.loaded.source), "fingerprint": ctx.loaded.fingerprint},
        "options": options_json(ctx.options),
        "layout": ctx.layout,
        "heads": {
            "kept_heads": selection.keep,
            "heads_per_layer": selection.heads_per_layer,
            "dropped": selection.drop,
            "total_before": analysis.layers * analysis.heads,
        },
        "tolerance_search": tolerance,
        "analysis": {"agreement": analysis.agreement(), "seconds": analysis.seconds, "languages": analysis.languages},
        "ceiling": {"file": gguf_key, **ceiling(before[gguf_key], after[gguf_key])},
        "files": {k: str(Path(v).relative_to(folder)) for k, v in after.items()},
        "files_before": {k: str(v) for k, v in before.items()},
        "timings_s": ctx.timings,
        **results,
    }
    (folder / "report.json").write_text(json.dumps(report, indent=1, default=str))
    (folder / "report.md").write_text(render(report))


def render(report: dict) -> str:
    heads, ceil = report["heads"], report["ceiling"]
    kept = report["languages"]["kept"]
    measured = report["speed"].get(ceil["file"], {})
    decode_ratios = ", ".join(f"{r['decode_tps_ratio']:.3f} ({t} thr)" for t, r in measured.items())
    parts = [
        f"# {report['model']['name']} for {', '.join(kept)}",
        f"Layout `{report['layout']}`: {len(heads['dropped'])} of {heads['total_before']} attention heads removed. "
        f"Kept languages: {', '.join(kept)}; dropped languages evaluated: {', '.join(report['languages']['dropped'])}. "
        "Perplexity and bits per byte on the evaluation split (articles 5, 10, 15, 20, 25, 30 of the UDHR), "
        "which the analysis never sees.",
        "## Summary (after / before)",
        markdown_table(["", "before", "after", "ratio"], summary(report)),
        "## Speed-up ceiling",
        f"Weights read per generated token ({ceil['file']}): {ceil['bytes_before'] / 1e6:.1f} MB before, "
        f"{ceil['bytes_after'] / 1e6:.1f} MB after: {ceil['fraction_removed']:.1%} removed, so decoding "
        f"(memory-bound) can be at most {ceil['speedup_ceiling']:.3f}x faster. Measured decode ratio: {decode_ratios}.",
        "## Quality per language",
        markdown_table(["runtime", "language", "ppl before", "ppl after", "change", "bpb before", "bpb after"], _quality_rows(report)),
        "## Language fidelity (greedy continuations identified as the prompt's language)",
        markdown_table(["runtime", "language", "before", "after", "a continuation after pruning"], _fidelity_rows(report)),
        "## Speed (medians of interleaved repetitions)",
        f"Prompt {report['speed_setup']['prompt_tokens']} tokens, {report['speed_setup']['decode_tokens']} decoded tokens, "
        f"{report['speed_setup']['reps']} repetitions; each run in a fresh process.",
        markdown_table(
            ["runtime", "threads", "prefill before", "prefill after", "ratio", "decode before", "decode after", "ratio",
             "peak RSS MB before", "after"], _speed_rows(report)),
        "## Heads",
        "Heads kept per layer: " + ", ".join(str(n) for n in heads["heads_per_layer"]),
        "Removed (layer, head): " + ", ".join(f"({layer},{head})" for layer, head in heads["dropped"]),
        "![heads](heatmap.png)",
        "Agreement of the analysis methods (Spearman, mean over languages): "
        + ", ".join(f"{k} {v:.2f}" for k, v in report["analysis"]["agreement"].items()),
        "## Files",
        markdown_table(["file", "bytes before", "bytes after"],
                       [(f"{k}: {report['files'][k]}", report["sizes"]["before"][k], report["sizes"]["after"][k]) for k in report["files"]]),
        "## Time per step (s)",
        markdown_table(["step", "seconds"], list(report["timings_s"].items())),
    ]
    if report.get("tolerance_search"):
        t = report["tolerance_search"]
        rows = [(p["heads_dropped"], json.dumps({k: round(v, 3) for k, v in p["perplexity"].items()}), p["within_tolerance"]) for p in t["probes"]]
        parts += ["## Tolerance search (calibration perplexity, masked heads)",
                  f"TOL={t['tol']}; baseline {json.dumps({k: round(v, 3) for k, v in t['baseline'].items()})}",
                  markdown_table(["heads dropped", "perplexity", "within tolerance"], rows)]
    return "\n\n".join(parts) + "\n"
