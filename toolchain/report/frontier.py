"""The vocabulary frontier's table (`make bench-vocab`, measured by `measure/vocab_frontier.py`):
one row per vocabulary size, against the original, in its own file and in the next export's report."""

from .report import GOALS, changes, markdown_table


def frontier_changes(row: dict, original: dict) -> dict:
    """One size against the original: {"outside": {source: {lang: (tokens, bits per byte)}},
    "evaluation": {lang: bits per byte}}, relative changes (`report.changes`)."""
    return {"outside": {source: {lang: changes(original["outside"][source][lang], q) for lang, q in by_lang.items()}
                        for source, by_lang in row["outside"].items()},
            "evaluation": {lang: changes(original["evaluation"][lang], q)[1] for lang, q in row["evaluation"].items()}}


def holds(row: dict, original: dict) -> bool:
    """Every kept language on every source within +0.5% tokens and +1% bits per byte."""
    return all(tokens <= GOALS["outside_token_rise"] and bpb <= GOALS["outside_bpb_rise"]
               for by_lang in frontier_changes(row, original)["outside"].values() for tokens, bpb in by_lang.values())


def render_frontier(result: dict) -> str:
    """A markdown table, one row per size, smallest first, the original last."""
    original, rows = result["rows"][0], sorted(result["rows"][1:], key=lambda r: r["tokens"])
    langs, sources = result["langs"], list(result["sources"])
    threads = result["threads"]
    header = ["tokens", f"{result['quant']} MiB", *(f"decode x, {t} thr" for t in threads),
              *(f"{lang} bpb, evaluation" for lang in langs),
              *(f"{lang} {source}: tokens / bpb / same tokens" for source in sources for lang in langs),
              f"within +{GOALS['outside_token_rise']:.1%} tokens, +{GOALS['outside_bpb_rise']:.0%} bpb"]
    body = []
    for row in rows:
        change = frontier_changes(row, original)
        body.append([f"{row['tokens']:,}" + (" (default)" if row["size"] == "default" else ""),
                     f"{row['file_bytes'] / 2**20:.0f} ({row['file_bytes'] / original['file_bytes']:.0%})",
                     *(f"{row['decode_speedup'][str(t)]:.2f}" for t in threads),
                     *(f"{change['evaluation'][lang]:+.2%}" for lang in langs),
                     *(f"{change['outside'][s][lang][0]:+.2%} / {change['outside'][s][lang][1]:+.2%} / "
                       f"{row['agreement'][s][lang]:.1%}" if lang in change["outside"][s] else "" for s in sources for lang in langs),
                     "yes" if holds(row, original) else "no"])
    body.append([f"{original['tokens']:,} (original)", f"{original['file_bytes'] / 2**20:.0f} (100%)",
                 *("1.00" for _ in threads), *("" for _ in langs), *("" for _ in sources for _ in langs), ""])
    named = "; ".join(f"{s}: {v['kind']} ({v['package']})" for s, v in result["sources"].items())
    return (f"llama.cpp, {result['quant']}, each size against the original (decode speed-up: median of {result['reps']} "
            f"interleaved runs). Changes are relative to the original; \"same tokens\": the share of the original's "
            f"tokens the trimmed tokenizer reproduces. Text beyond the corpus, never read by the selection: {named}.\n\n"
            + markdown_table(header, body) + "\n")
