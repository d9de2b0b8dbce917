"""The cuts' frontier table (`make bench-frontier`, measured by `langprune/frontier.py`): one row per
level of cutting, against the original, in its own file and in the next export's report."""

from statistics import mean

from ..options import QUALITY_LIMITS
from .tables import changes, markdown_table

# The benchmark's target, set for Gemma 3 270M, LANGS=en,de, Q4_K_M in llama.cpp: a column of the table, not a promise
FRONTIER_GOAL = {"decode_ratio": 2.5, "size_ratio": 0.33, "kept_bpb_rise": 0.05}


def frontier_changes(row: dict, original: dict) -> dict:
    """One level against the original, relative changes (`report.changes`): {"outside": {source:
    {lang: (tokens, bits per byte)}}, "evaluation": {lang: bits per byte}, "dropped": {lang: bits per byte}}."""
    return {"outside": {source: {lang: changes(original["outside"][source][lang], q) for lang, q in by_lang.items()}
                        for source, by_lang in row["outside"].items()},
            **{split: {lang: changes(original[split][lang], q)[1] for lang, q in row[split].items()}
               for split in ("evaluation", "dropped")}}


def vocab_holds(row: dict, original: dict) -> bool:
    """Every kept language on every source beyond the corpus within +0.5% tokens and +1% bits per byte."""
    return all(tokens <= QUALITY_LIMITS["outside_token_rise"] and bpb <= QUALITY_LIMITS["outside_bpb_rise"]
               for by_lang in frontier_changes(row, original)["outside"].values() for tokens, bpb in by_lang.values())


def meets_goal(row: dict, original: dict) -> bool:
    """The benchmark's target: decode >= 2.5x at every thread count, file <= 33%, kept languages' bits per
    byte within +5% on the evaluation split and on every source beyond the corpus."""
    change = frontier_changes(row, original)
    bpb = [*change["evaluation"].values(), *(b for by_lang in change["outside"].values() for _, b in by_lang.values())]
    return (min(row["decode_speedup"].values()) >= FRONTIER_GOAL["decode_ratio"]
            and row["file_bytes"] / original["file_bytes"] <= FRONTIER_GOAL["size_ratio"]
            and max(bpb) <= FRONTIER_GOAL["kept_bpb_rise"])


def render_frontier(result: dict) -> str:
    """A markdown table, one row per level in the order measured, the original last."""
    original, rows = result["rows"][0], result["rows"][1:]
    langs, sources, threads = result["langs"], list(result["sources"]), result["threads"]
    header = ["cut", "heads / FFN neurons / tokens", f"{result['quant']} MiB", *(f"decode x, {t} thr" for t in threads),
              *(f"{lang} bpb: evaluation / {' / '.join(sources)}" for lang in langs),
              *(f"{lang} {source}: tokens / same tokens" for source in sources for lang in langs),
              "dropped bpb, evaluation: mean (range)",
              f"beyond the corpus within +{QUALITY_LIMITS['outside_token_rise']:.1%} tokens, "
              f"+{QUALITY_LIMITS['outside_bpb_rise']:.0%} bpb",
              f"target: >= {FRONTIER_GOAL['decode_ratio']}x, <= {FRONTIER_GOAL['size_ratio']:.0%}, "
              f"<= +{FRONTIER_GOAL['kept_bpb_rise']:.0%} bpb"]
    body = []
    for row in rows:
        change = frontier_changes(row, original)
        dropped = list(change["dropped"].values())
        body.append([f"`{row['cut']}`", _shape(row),
                     f"{row['file_bytes'] / 2**20:.0f} ({row['file_bytes'] / original['file_bytes']:.0%})",
                     *(f"{row['decode_speedup'][str(t)]:.2f}" for t in threads),
                     *(" / ".join([f"{change['evaluation'][lang]:+.1%}",
                                   *(f"{change['outside'][s][lang][1]:+.1%}" if lang in change["outside"][s] else "-"
                                     for s in sources)]) for lang in langs),
                     *(f"{change['outside'][s][lang][0]:+.2%} / {row['agreement'][s][lang]:.1%}"
                       if "agreement" in row and lang in change["outside"][s] else ""
                       for s in sources for lang in langs),
                     f"{mean(dropped):+.0%} ({min(dropped):+.0%} to {max(dropped):+.0%})" if dropped else "",
                     "yes" if vocab_holds(row, original) else "no", "yes" if meets_goal(row, original) else "no"])
    body.append(["original", _shape(original), f"{original['file_bytes'] / 2**20:.0f} (100%)",
                 *("1.00" for _ in threads), *("" for _ in header[3 + len(threads):])])
    named = "; ".join(f"{s}: {v['kind']} ({v['package']})" for s, v in result["sources"].items())
    timing = ("llama-bench's tg128, mean of" if "prompt_speedup" in result["rows"][-1] else "median of")
    return (f"llama.cpp, {result['quant']}, each level against the original (decode speed-up: {timing} "
            f"{result['reps']} interleaved runs), {result['layout']} layout. A level is the export's own selection at "
            "fixed sizes: `vocab` the default vocabulary trim, `heads`/`ffn` the fraction dropped, the heads' o_proj "
            "refit unless `norefit`, `iterative` both chosen a step at a time (re-scored after each), `heal` the "
            "minutes of distillation after it, `quant`/`output` the GGUF file type and output layer type (default: "
            f"{result['quant']}, its own output layer): a level with no cut is the original quantized so. "
            "Bits per byte and token counts are changes against the original; \"same tokens\": the share of the "
            f"original's tokens the trimmed tokenizer reproduces; dropped languages ({', '.join(result['dropped'])}): "
            f"their first evaluation documents. Text beyond the corpus, never read by a selection: {named}.\n\n"
            + markdown_table(header, body) + "\n")


def _shape(row: dict) -> str:
    return f"{row['heads']} / {row['neurons']:,} / {row['tokens']:,}"
