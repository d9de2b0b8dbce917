"""report.json (every figure) and report.md (the same, for people), original against pruned."""

import json
import math
import statistics
from pathlib import Path

from .alternatives import alternatives_text, deployed_choice_text
from .cuts import cuts_text, search_text
from .ondevice import mobile_text
from .speed import build_text, decode_ratios, llama_bench_rows, llama_bench_text
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
    rows += llama_bench_rows(results)
    for key in results["sizes"]["after"]:
        b, a = results["sizes"]["before"][key], results["sizes"]["after"][key]
        rows.append((f"{key}: file size (MB)", f"{b / 1e6:.1f}", f"{a / 1e6:.1f}", f"{a / b:.3f}"))
    return rows


def given_text(report: dict) -> list[str]:
    """The deployed file against the model the user gave: size, llama-bench, bits per byte beyond the corpus (none
    for a report from before it was measured)."""
    given = report.get("given")
    if not given:
        return []
    deployed, bench = report["deployed"], report["llama_bench"]["files"]
    size = report["sizes"]["after"][deployed]
    rows = [("file size (MB)", f"{given['size'] / 1e6:.1f}", f"{size / 1e6:.1f}", f"{size / given['size']:.3f}")]
    for threads, tests in bench.get("given", {}).items():  # `make bench` where the given file is gone: none
        for test, figures in tests.items():
            after = bench["after"][threads][test]["mean"]
            rows.append((f"{test} tok/s (llama-bench), {threads} thread(s)", f"{figures['mean']:.1f}", f"{after:.1f}",
                         f"{after / figures['mean']:.3f}"))
    for source, sides in report["outside"]["quality"].items():
        for lang, yours in sides.get("given", {}).items():
            b, a = yours["bits_per_byte"], sides["after"][lang]["bits_per_byte"]
            rows.append((f"bits per byte beyond the corpus, {lang} {source}", f"{b:.4f}", f"{a:.4f}",
                         f"{a / b - 1:+.2%}"))
    return ["## The deployed file against the model you gave",
            f"`{given['file']}` ({given['type']}) as given, against the deployed `{report['files'][deployed]}` "
            "(llama-bench interleaved with both; the same text beyond the corpus). The comparisons below are each "
            "against the original at the deployed file's own type.",
            markdown_table(["", "yours", "deployed", "ratio"], rows)]


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
    """The report of an export into `folder`: `export` (model, options, layout, structure, timings_s, peak_rss_mb),
    what the `analysis` and the `cuts` decided, the `files` by side ("before": the original's, "after": those in
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
        "peak_rss_mb": export["peak_rss_mb"],
        **results,
    }


def write_report(folder: Path, report: dict, name: str = "report") -> None:
    """<name>.json and <name>.md, both rendered first and each replaced whole (a kill mid-write leaves the old)."""
    from ..paths import written

    texts = {f"{name}.json": json.dumps(report, indent=1, default=str), f"{name}.md": render(report)}
    for file, text in texts.items():
        with written(folder / file) as partial:
            partial.write_text(text)


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
            f"ones in the deployed file only (`{report['deployed']}`) and on the first "
            f"{report['languages']['dropped_documents']} evaluation documents.")


def render(report: dict) -> str:
    ceil = report["ceiling"]
    kept = report["languages"]["kept"]
    measured = ", ".join(f"{ratio:.3f} ({t} thr)" for t, ratio in decode_ratios(report).items())
    setup, limits = report["speed_setup"], limit_rows(report)
    parts = [
        f"# {report['model']['name']} for {', '.join(kept)}",
        f"Layout `{report['layout']}`. Kept languages: {', '.join(kept)}. {_languages_text(report)} Perplexity and "
        f"bits per byte on the evaluation split ({_evaluation_split(report)}), which the analysis never sees. Bits "
        "per byte compare across vocabularies; perplexity does not once the vocabulary is trimmed.",
        *given_text(report),
        "## Summary (after / before)",
        markdown_table(["", "before", "after", "ratio"], summary(report)),
        f"## Quality limits (the deployed file, `{report['deployed']}`)",
        markdown_table(["", "limit", "measured", "within"], limits),
        limits_verdict(limits),
        *deployed_choice_text(report),
        *cuts_text(report),
        "## Speed-up ceiling",
        f"Weights read per generated token ({ceil['file']}): {ceil['bytes_before'] / 1e6:.1f} MB before, "
        f"{ceil['bytes_after'] / 1e6:.1f} MB after: {ceil['fraction_removed']:.1%} removed, so decoding "
        f"(memory-bound) can be at most {ceil['speedup_ceiling']:.3f}x faster. Measured decode ratio: {measured}. "
        "By part of the model:",
        markdown_table(["weights read per token", "MB before", "MB after", "share after", "types after"],
                       _weight_rows(ceil)),
        *_outside_text(report),
        *_frontier_text(report),
        *mobile_text(report),
        *alternatives_text(report),
        "## Quality per language",
        markdown_table(["runtime", "language", "ppl before", "ppl after", "change", "bpb before", "bpb after"],
                       _quality_rows(report)),
        "## Language fidelity (greedy continuations identified as the prompt's language)",
        markdown_table(["runtime", "language", "before", "after", "a continuation after pruning"],
                       _fidelity_rows(report)),
        *llama_bench_text(report),
        "## Speed (medians of interleaved repetitions)",
        f"Prompt: the same text, {setup['prompt_tokens']} tokens per side; {setup['decode_tokens']} decoded tokens, "
        f"{setup['reps']} repetitions; each run in a fresh process. ONNX Runtime decodes greedily; the GGUF file "
        "samples as llama.cpp does by default (top-k 40, top-p 0.95, min-p 0.05, temperature 0.8; llama-cpp-python's "
        "generate): the sampler reads every token's logit, which llama-bench's tg128 does not." + build_text(setup),
        markdown_table(
            ["runtime", "threads", "prefill before", "prefill after", "ratio", "decode before", "decode after", "ratio",
             "peak RSS MB before", "after"], _speed_rows(report)),
        *search_text(report),
        "## Files",
        markdown_table(["file", "bytes before", "bytes after"],
                       [(f"{k}: {report['files'][k]}", report["sizes"]["before"][k], report["sizes"]["after"][k])
                        for k in report["files"]]),
        "## Time and memory per step",
        "Peak memory: this process's resident memory at its highest in the step (read every 50 ms, and Linux's "
        "high-water mark where the step raised it); the speed runs and llama-bench are processes of their own, "
        "measured in their tables.",
        markdown_table(["step", "seconds", "peak memory (GB)"],
                       [(step, s, _gigabytes(report.get("peak_rss_mb", {}).get(step)))
                        for step, s in report["timings_s"].items()]),
        *_precision_text(report),
    ]
    return "\n\n".join(parts) + "\n"


def _gigabytes(mb: float | None) -> str:
    return "" if mb is None else f"{mb / 1024:.2f}"
