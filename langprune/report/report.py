"""report.json (every figure) and report.md (the same, for people), original against pruned."""

import json
import math
import statistics
from pathlib import Path

from .tables import limit_rows, limits_verdict, markdown_table, outside_changes


def _mean(values) -> float:
    return statistics.fmean(values) if values else math.nan


def summary(results: dict) -> list[tuple[str, str, str, str]]:
    """The headline rows: (what, before, after, after/before)."""
    kept, dropped = results["languages"]["kept"], results["languages"]["dropped"]
    rows = [(what, str(b), str(a), ratio) for what, b, a, ratio in _structure_rows(results)]
    for lang, a in (results.get("tokenization") or {}).items():
        rows.append((f"tokens as with the full vocabulary, {lang} evaluation text", "100%", f"{a['share']:.2%}", ""))
    for key, runs in results["quality"].items():
        for group, langs in (("kept", kept), ("dropped", dropped)):
            if not langs or not set(langs) <= set(runs["after"]):
                continue  # dropped languages: measured in the deployed file only
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


def _outside_text(report: dict) -> list[str]:
    from ..data.outside_text import CHARS

    outside = report.get("outside")
    if not outside:
        return []
    sources = "; ".join(f"`{s}` ({v['kind']}; {v['package']})" for s, v in outside["sources"].items())
    rows = []
    for source, counted in outside["dropped_tokens"].items():  # every source; those with a kept language scored
        quality = outside["quality"].get(source, {"before": {}})
        for lang in quality["before"]:
            tokens, bpb = outside_changes(report, source, lang)
            b, a = quality["before"][lang], quality["after"][lang]
            alike = outside.get("tokenization", {}).get(source, {}).get(lang)
            rows.append((source, f"{lang} (kept)", b["tokens"], a["tokens"], f"{tokens:+.2%}",
                         f"{b['bits_per_byte']:.4f}",
                         f"{a['bits_per_byte']:.4f}", f"{bpb:+.2%}",
                         f"{alike['texts_identical']}/{alike['texts']}" if alike else ""))
        for lang, before in counted["before"].items():
            after = counted["after"][lang]
            rows.append((source, lang, before, after, f"{after / before - 1:+.2%}", "", "", "", ""))
    return ["## Beyond the corpus",
            f"Text that no selection reads (about {CHARS:,} characters per language and source, drawn evenly over each "
            f"package), from {sources}; in {outside['file']}. Kept languages scored, dropped ones counted in tokens "
            "(their loss is on the evaluation split above).",
            markdown_table(["source", "language", "tokens before", "after", "change", "bpb before",
                            "bpb after", "change",
                            "documents tokenized alike"], rows)]


def _quality_rows(results: dict) -> list:
    kept = results["languages"]["kept"]
    rows = []
    for key, runs in results["quality"].items():
        for lang in runs["after"]:
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


def structure(model) -> dict:
    """Attention heads, FFN neurons and vocabulary size of a model, per layer where they vary."""
    from ..model.parts import HEADS, NEURONS

    return {"heads_per_layer": HEADS.sizes(model), "ffn_per_layer": NEURONS.sizes(model),
            "vocabulary": int(model.get_input_embeddings().weight.shape[0]),
            "parameters": sum(p.numel() for p in model.parameters())}


def export_report(folder: Path, export: dict, analysis, cuts, files: dict, results: dict) -> dict:
    """The report of an export into `folder`: `export` (model, options, layout, structure, timings_s), what the
    `analysis` and the `cuts` decided, the `files` by side ("before": the original's, "after": those in
    `folder`) and the checks' `results`."""
    return {
        **{key: export[key] for key in ("model", "options", "layout", "structure")},
        "heads": {"kept_heads": cuts.heads.keep, "dropped": cuts.heads.drop} if cuts.heads else None,
        "ffn": {"kept_neurons": cuts.neurons.keep} if cuts.neurons else None,
        "vocab": {"kept_tokens": len(cuts.tokens), "parts": cuts.token_parts} if cuts.tokens else None,
        "frontier": measured_frontier(export["model"]["name"], export["options"]["langs"]),
        "tolerance_search": cuts.search,
        "heal": cuts.heal,
        "analysis": analysis and {"agreement": analysis.agreement(), "seconds": analysis.seconds,
                                  "languages": analysis.languages, "precision": analysis.precision},
        "files": {k: str(Path(v).relative_to(folder)) for k, v in files["after"].items()},
        "files_before": {k: str(v) for k, v in files["before"].items()},
        "timings_s": export["timings_s"],
        **results,
    }


def write_report(folder: Path, report: dict) -> None:
    (folder / "report.json").write_text(json.dumps(report, indent=1, default=str))
    (folder / "report.md").write_text(render(report))


def measured_frontier(model_name: str, langs: list[str]) -> dict | None:
    """The frontier `make bench-frontier` measured for this model and these languages, if any."""
    from ..paths import frontier_dir

    path = frontier_dir(model_name, langs) / "frontier.json"
    return {"file": str(path), **json.loads(path.read_text())} if path.exists() else None


def _frontier_text(report: dict) -> list[str]:
    from .frontier import render_frontier

    frontier = report.get("frontier")
    if not frontier:
        return ["## Frontier", "Not measured for this model and these languages: `make bench-frontier "
                f"LANGS={','.join(report['languages']['kept'])}` exports the cuts at several levels and measures file "
                "size, decode speed-up and bits per byte, on the evaluation split and beyond the corpus, of each; "
                "the next export's report shows it."]
    return ["## Frontier", f"From `make bench-frontier` ({frontier['file']}, {frontier['measured']}):",
            render_frontier(frontier)]


def _mobile_text(report: dict) -> list[str]:
    mobile = report.get("mobile")
    if not mobile:
        return ["## On-device", "Not checked: `make mobile-check` checks this export for ONNX Runtime Mobile and for "
                "llama.cpp on arm64."]
    return ["## On-device", *_ort_mobile_text(mobile["ort"]),
            *_arm64_text(mobile.get("arm64"), report.get("speed", {}))]


def _arm64_text(arm: dict | None, speed: dict) -> list[str]:
    if not arm:
        return []
    return ["llama.cpp on arm64 (`make mobile-check`): llama-cpp-python's llama.cpp cross-built for aarch64 "
            f"({arm['arch']}) and run under qemu-user as a {arm['cpu']}, against llama-cpp-python here (x86-64): the "
            f"first {arm['scored_tokens']} tokens of each kept language's evaluation split scored, and "
            f"{arm['greedy_tokens']} greedy tokens after a prompt. It holds where the tokens are the host's, "
            f"perplexity is within {arm['tolerance']:.0%} and the greedy tokens are the host's up to a near tie (the "
            f"host's top two logits within {arm['near_tie']}: there llama.cpp's own numerics decide). Beside each "
            "perplexity: how much the host's own figure moves with flash attention on (off is llama-cpp-python's "
            "default), the spread of two valid llama.cpp settings on one CPU. Emulated speed means nothing for a "
            "phone and is not measured; what a phone pays is: file size, weights read per generated token, KV cache "
            "(f16) per 1k tokens of context, and the peak memory of the decode runs here.",
            markdown_table(["file", "MiB", "read per token MiB", "KV per 1k tokens MiB", "repacked at load MiB",
                            "peak RSS here MiB", "greedy = host", "perplexity here -> arm64", "holds"],
                           [_arm64_row(kind, checked, speed.get(f"gguf {kind}"))
                            for kind, checked in arm["files"].items()])]


def _arm64_row(kind: str, checked: dict, speed: dict | None) -> tuple:
    langs = checked["languages"]
    peak = ", ".join(f"{r['peak_rss_mb_after']:.0f} ({threads} thr)" for threads, r in speed.items()) if speed else "-"
    return (f"`{checked['file']}`", f"{checked['bytes'] / 2**20:.1f}",
            f"{checked['weights_read_per_token'] / 2**20:.1f}",
            f"{checked['kv_bytes_per_1k_tokens'] / 2**20:.1f}", f"{checked['repacked_mib']:.1f}", peak,
            ", ".join(f"{lang} {r['greedy_agree']}/{len(r['greedy_x86'])}"
                      + ("" if r["greedy_same"] else f" (margin {r['margin_at_divergence']:.2f})")
                      for lang, r in langs.items()),
            ", ".join(f"{lang} {r['perplexity_x86']:.3f} -> {r['perplexity_arm64']:.3f} ({r['perplexity_diff']:+.2%}; "
                      f"flash attention {r['flash_attn_diff']:+.2%})" for lang, r in langs.items()),
            "yes" if checked["holds"] else "NO")


def _ort_mobile_text(ort: dict) -> list[str]:
    same = ", ".join(f"{lang} {'yes' if g['same'] else 'NO'}" for lang, g in ort["greedy"].items())
    # its verdicts (the partition details stay in report.json)
    findings = [line.strip() for line in ort["usability"].splitlines()
                if "should perform well" in line or "recommended" in line or "CPU EP" in line]
    return [f"ONNX Runtime Mobile (`make mobile-check`): `{ort['ort']}` ({ort['ort_bytes'] / 2**20:.0f} MiB), "
            f"converted from `{ort['onnx']}`; a reduced ONNX Runtime build for it needs the {len(ort['operators'])} "
            f"operator lines of `{ort['config']}`. Greedy tokens of the ORT-format model equal the ONNX model's "
            f"({ort['greedy_tokens']} tokens, one prompt a kept language): {same}.{_ort_arm64_text(ort.get('arm64'))} "
            "ONNX Runtime's mobile usability check's verdicts:",
            "```\n" + "\n".join(findings) + "\n```"]


def _ort_arm64_text(arm: dict | None) -> str:
    if not arm:
        return ""
    return (" In onnxruntime for aarch64 (PyPI's wheel, an aarch64 Python under qemu-user as a Cortex-A76), the "
            "ORT-format model's greedy tokens against those here (leading tokens alike): " + ", ".join(
                f"{lang} {r['greedy_agree']}/{len(r['greedy_x86'])}"
                + ("" if r["greedy_same"] else f" (parting at a top-two margin of {r['margin_at_divergence']:.2f})")
                for lang, r in arm.items()) + ".")


def _weight_rows(ceil: dict) -> list:
    before, after = ceil["parts"]["before"], ceil["parts"]["after"]
    return [(part, f"{before[part]['bytes'] / 1e6:.1f}", f"{p['bytes'] / 1e6:.1f}",
             f"{p['bytes'] / ceil['bytes_after']:.0%}", ", ".join(p["types"]))
            for part, p in sorted(after.items(), key=lambda kv: -kv[1]["bytes"])]


def _structure_rows(report: dict) -> list:
    b, a = report["structure"]["before"], report["structure"]["after"]
    rows = [("attention heads", sum(b["heads_per_layer"]), sum(a["heads_per_layer"])),
            ("FFN neurons", sum(b["ffn_per_layer"]), sum(a["ffn_per_layer"])),
            ("vocabulary (tokens)", b["vocabulary"], a["vocabulary"]),
            ("parameters (M)", round(b["parameters"] / 1e6, 1), round(a["parameters"] / 1e6, 1))]
    return [(what, x, y, f"{y / x:.3f}") for what, x, y in rows]


def _tokenization_text(report: dict) -> str:
    agreement = report.get("tokenization")
    if not agreement:
        return "The vocabulary is untouched."
    per_lang = ", ".join(f"{lang} {a['share']:.2%} of {a['tokens']} tokens" for lang, a in agreement.items())
    parts = report["vocab"].get("parts") or {}
    chosen = ", ".join(f"{part} {n}" for part, n in parts.items() if part != "total" and n)
    return (f"{report['vocab']['kept_tokens']} tokens kept ({chosen}). The evaluation text of the kept languages "
            f"tokenizes to the same sequence as with the full vocabulary (mapped ids) for: {per_lang}.")


def _cuts_text(report: dict) -> list[str]:
    a = report["structure"]["after"]
    parts = ["## What was cut (totals in the summary)",
             "Heads per layer: " + ", ".join(map(str, a["heads_per_layer"])),
             "FFN width per layer: " + ", ".join(map(str, a["ffn_per_layer"])),
             _tokenization_text(report)]
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


def _search_text(report: dict) -> list[str]:
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


def _precision_text(report: dict) -> list[str]:
    analysis = report.get("analysis")
    if not analysis or not analysis.get("precision"):
        return []
    return [f"The head analysis's output layer ran in {analysis['precision']}; every measurement is float32."]


def _evaluation_split(report: dict) -> str:
    """What the evaluation split is, in the corpus the export used."""
    folder = report["options"].get("corpus")
    if folder:
        return f"every fifth paragraph of each <lang>.txt in {folder}"
    return "articles 5, 10, 15, 20, 25, 30 of the UDHR"


def _languages_text(report: dict) -> str:
    dropped = report["languages"]["dropped"]
    if not dropped:
        return ("The corpus has no other language: heads were ranked by what the kept languages need alone, with no "
                "other language's need to weigh against, and no dropped language is measured.")
    return (f"Dropped languages evaluated: {', '.join(dropped)}. Kept languages are scored in every runtime, dropped "
            f"ones in the deployed file only (the smallest GGUF file) and on the first "
            f"{report['languages']['dropped_documents']} evaluation documents.")


def render(report: dict) -> str:
    ceil = report["ceiling"]
    kept = report["languages"]["kept"]
    measured = report["speed"].get(ceil["file"], {})
    decode_ratios = ", ".join(f"{r['decode_tps_ratio']:.3f} ({t} thr)" for t, r in measured.items())
    setup, limits = report["speed_setup"], limit_rows(report)
    parts = [
        f"# {report['model']['name']} for {', '.join(kept)}",
        f"Layout `{report['layout']}`. Kept languages: {', '.join(kept)}. {_languages_text(report)} Perplexity and "
        f"bits per byte on the evaluation split ({_evaluation_split(report)}), which the analysis never sees. Bits "
        "per byte compare across vocabularies; perplexity does not once the vocabulary is trimmed.",
        "## Summary (after / before)",
        markdown_table(["", "before", "after", "ratio"], summary(report)),
        f"## Quality limits (the deployed file, `{report['deployed']}`)",
        markdown_table(["", "limit", "measured", "within"], limits),
        limits_verdict(limits),
        *_cuts_text(report),
        "## Speed-up ceiling",
        f"Weights read per generated token ({ceil['file']}): {ceil['bytes_before'] / 1e6:.1f} MB before, "
        f"{ceil['bytes_after'] / 1e6:.1f} MB after: {ceil['fraction_removed']:.1%} removed, so decoding "
        f"(memory-bound) can be at most {ceil['speedup_ceiling']:.3f}x faster. Measured decode ratio: {decode_ratios}. "
        "By part of the model:",
        markdown_table(["weights read per token", "MB before", "MB after", "share after", "types after"],
                       _weight_rows(ceil)),
        *_outside_text(report),
        *_frontier_text(report),
        *_mobile_text(report),
        "## Quality per language",
        markdown_table(["runtime", "language", "ppl before", "ppl after", "change", "bpb before", "bpb after"],
                       _quality_rows(report)),
        "## Language fidelity (greedy continuations identified as the prompt's language)",
        markdown_table(["runtime", "language", "before", "after", "a continuation after pruning"],
                       _fidelity_rows(report)),
        "## Speed (medians of interleaved repetitions)",
        f"Prompt: the same text, {setup['prompt_tokens']} tokens per side; {setup['decode_tokens']} decoded tokens, "
        f"{setup['reps']} repetitions; each run in a fresh process.",
        markdown_table(
            ["runtime", "threads", "prefill before", "prefill after", "ratio", "decode before", "decode after", "ratio",
             "peak RSS MB before", "after"], _speed_rows(report)),
        *_search_text(report),
        "## Files",
        markdown_table(["file", "bytes before", "bytes after"],
                       [(f"{k}: {report['files'][k]}", report["sizes"]["before"][k], report["sizes"]["after"][k])
                        for k in report["files"]]),
        "## Time per step (s)",
        markdown_table(["step", "seconds"], list(report["timings_s"].items())),
        *_precision_text(report),
    ]
    return "\n\n".join(parts) + "\n"
