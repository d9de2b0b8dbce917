"""The report's "What else a user could deploy" section (`make bench-quants`): every file type of both models,
the Pareto front marked (`measure/alternatives.py`)."""

from ..measure.alternatives import dominates
from ..measure.llama_bench import BUSY_SPREAD
from ..options import GGUF_QUANTS, QUALITY_LIMITS
from .tables import markdown_table


def alternatives_text(report: dict) -> list[str]:
    alt = report.get("alternatives")
    if not alt:
        return ["## What else a user could deploy", "Not measured: `make bench-quants` measures the original and the "
                "export at every GGUF file type, with the output layer at each type, and marks the Pareto front."]
    rows, threads, kept = alt["files"], alt["threads"], report["languages"]["kept"]
    deployed, front = alt["deployed"], alt["front"]
    better = [f"`{name}`" for name in front if dominates(rows[name], rows[deployed], alt["front_threads"])]
    on_front = (f"The deployed file (`{deployed}`) is on the Pareto front." if deployed in front else
                f"**The deployed file (`{deployed}`) is not on the Pareto front**: {', '.join(better)} are no "
                "larger, no slower and no worse beyond the corpus, and better on one count.")
    header = (["file", "output layer", "size"] + [f"{test} {t} thr" for t in threads for test in ("pp512", "tg128")]
              + [f"{lang} {split}" for lang in kept for split in ("evaluation", "beyond (worst)")] + ["front"])
    table = [(name, row["output_type"], f"{row['relative_size']:.2f}",
              *(f"{row['speed'][str(t)][test]['ratio']:.2f}x" for t in threads for test in ("pp512", "tg128")),
              *(f"{row['changes'][split][lang]:+.1%}" if lang in row["changes"][split] else "-"
                for lang in kept for split in ("evaluation", "outside")),
              ("**deployed**, " if name == deployed else "") + ("yes" if name in front else ""))
             for name, row in sorted(rows.items(), key=lambda item: _order(item[1]))]
    busy = sorted({b for row in rows.values() for b in row["busy"]})
    return ["## What else a user could deploy",
            f"The original and this export at every GGUF file type llama.cpp users pick between, each with its output "
            f"layer at the type's default and at every other type that changes the file (llama.cpp's quantizer, "
            f"`output_tensor_type`). Against `{alt['baseline']}`: size; llama-bench's pp512 and tg128 (mean of "
            f"{alt['reps']} runs, interleaved with the baseline in one run per file type); bits per byte on the "
            "evaluation split and, worst over the texts beyond the corpus, per kept language. The front: no other "
            f"file is smaller, faster (tg128, {alt['front_threads']} threads) and better beyond the corpus at once. "
            + on_front + (f" Spread over the limit: {'; '.join(busy)}." if busy else ""),
            markdown_table(header, table), "![decode speed against bits per byte](quants.png)"] + _choice_text(alt)


def deployed_choice_text(report: dict) -> list[str]:
    """How QUANT=auto chose the deployed file (`measure/auto_quant.py`); nothing for an explicit QUANT."""
    from ..data.outside_text import CHARS
    from ..measure.auto_quant import SAMPLE_EVERY

    choice = report.get("choice")
    if not choice:
        return []
    rows = sorted(choice["candidates"].items(), key=lambda item: -item[1].get("tg128", 0))  # those left out last
    if choice["within_limit"]:
        verdict = (f"`{choice['file']}` is the fastest file within the limit (within {BUSY_SPREAD:.0%} counts as as "
                   "fast), and of those the smallest.")
    else:
        why = "No candidate is within the limit" if choice["texts"] else "No kept language has text beyond the corpus"
        verdict = f"**{why}**: `{choice['file']}`, the smallest file type's default, is deployed, as without auto."
    if choice.get("all_larger"):
        verdict += (f" **Every candidate is larger than the model given** ({choice['largest'] / 1e6:.1f} MB): name a "
                    "smaller file type in QUANT (e.g. QUANT=auto,Q4_0) to choose among smaller files.")
    elif any("left_out" in row for row in choice["candidates"].values()):
        verdict += (f" Files larger than the model given ({choice['largest'] / 1e6:.1f} MB) were left out (QUANT names "
                    "no file type; naming them, e.g. QUANT=auto,Q8_0, lets larger files be chosen).")
    busy = f" Spread over {BUSY_SPREAD:.0%} (a busy machine): {'; '.join(choice['busy'])}." if choice["busy"] else ""
    if any(row.get("imatrix") for row in choice["candidates"].values()):
        verdict += (" IMATRIX=on: a file over the limit was quantized again with an importance matrix of the kept "
                    "languages' calibration text (`, imatrix`; the same tensor types, so its twin's tg128)" +
                    (f", kept as `{choice['imatrix']}` for the deployed file." if choice.get("imatrix") else "."))
    return ["## The deployed file (QUANT=auto)",
            "The pruned model at each file type asked for, its output layer at the type's default and at every other "
            f"type that changes the file, fastest first in llama-bench's tg128 ({choice['threads']} threads, mean of "
            f"{choice['reps']} runs, interleaved). Against the original at the file type: size, tg128, and the worst "
            f"kept language's bits per byte over the texts beyond the corpus (every {SAMPLE_EVERY}th document of their "
            f"selection samples, about {CHARS:,} characters each; the limits above are checked on others), each file "
            f"scored up to its first text over the limit of +{choice['limit']:.1%}. " + verdict + busy,
            markdown_table(["file", "output layer", "size", "tg128 tok/s", "tg128", "worst beyond the corpus", ""],
                           [_candidate_row(key, row, choice) for key, row in rows])]


def _candidate_row(key: str, row: dict, choice: dict) -> tuple:
    if "left_out" in row:
        return key, row["output_type"], f"{row['relative_size']:.2f}", "-", "-", f"left out: {row['left_out']}", ""
    if "held" in row:
        quality = f"{row['worst_outside']:+.2%}" + ("" if row["held"] else " (scoring stopped there)")
    else:
        quality = f"not scored: {row.get('not_scored', 'no text')}"
    return (key, row["output_type"], f"{row['relative_size']:.2f}", f"{row['tg128']:.1f}", f"{row['tg128_ratio']:.2f}x",
            quality, "**deployed**" if key == choice["file"] else "")


def _choice_text(alt: dict) -> list[str]:
    """The file the rule of QUANT=auto picks from this table (reports made before it have none)."""
    if "choice" not in alt:
        return []
    rule = (f"the fastest pruned file (tg128, {alt['front_threads']} threads; within {BUSY_SPREAD:.0%} counts as as "
            f"fast), then the smallest, of those within +{QUALITY_LIMITS['outside_bpb_rise']:.0%} bits per byte "
            f"beyond the corpus and +{QUALITY_LIMITS['kept_bpb_rise']:.0%} on the evaluation split for every kept "
            "language")
    if alt["choice"] is None:
        return [f"Chosen by that measure ({rule}): none, no pruned file holds the limits."]
    same = " (the deployed file)" if alt["choice"] == alt["deployed"] else f" (deployed: `{alt['deployed']}`)"
    return [f"Chosen by that measure ({rule}): `{alt['choice']}`{same}."]


def _order(row: dict) -> tuple:
    return row["side"] != "original", GGUF_QUANTS.index(row["kind"]), row["output"] or ""

