"""`make bench-languages`: one export per language set, side by side (languages.md and .json).

Each row is read from that export's own report.json: what it kept, its deployed file's size and
decode speed-up, the worst kept language beyond the corpus, and whether every kept language is
within every quality limit; a set the export refused gets its one line instead."""

import json
from pathlib import Path

from .speed import decode_ratios
from .tables import limit_rows, markdown_table, outside_changes


def language_row(langs: str, report: dict | str) -> dict:
    """The table's figures of one export's report (or the refusal's message)."""
    if isinstance(report, str):
        return {"langs": langs, "refused": report}
    b, a = report["structure"]["before"], report["structure"]["after"]
    deployed = report["deployed"]
    worst = max(((lang, source, *outside_changes(report, source, lang))
                 for source, q in report.get("outside", {}).get("quality", {}).items() for lang in q["before"]),
                key=lambda row: row[3], default=None)
    return {"langs": langs, "deployed": deployed,
            "tokens": [b["vocabulary"], a["vocabulary"]],
            "heads": [sum(b["heads_per_layer"]), sum(a["heads_per_layer"])],
            "neurons": [sum(b["ffn_per_layer"]), sum(a["ffn_per_layer"])],
            "size": report["sizes"]["after"][deployed] / report["sizes"]["before"][deployed],
            "decode": decode_ratios(report),
            "worst_outside": dict(zip(("lang", "source", "tokens", "bits_per_byte"), worst)) if worst else None,
            "within_limits": all(within == "yes" for *_, within in limit_rows(report))}


def write_languages(folder: Path, model: str, reports: dict[str, dict | str]) -> Path:
    rows = [language_row(langs, report) for langs, report in reports.items()]
    (folder / "languages.json").write_text(json.dumps({"model": model, "rows": rows}, indent=1))
    table = []
    for row in rows:
        if "refused" in row:
            table.append((row["langs"], "refused: " + row["refused"], "", "", "", "", ""))
            continue
        worst = row["worst_outside"]
        threads = sorted(row["decode"], key=int)
        table.append((row["langs"], f"{row['tokens'][1]:,}", f"{row['heads'][1]} / {row['neurons'][1]:,}",
                      f"{row['size']:.3f}", " / ".join(f"{row['decode'][t]:.2f}x" for t in threads),
                      f"{worst['lang']} {worst['source']}: {worst['bits_per_byte']:+.2%} bpb, "
                      f"{worst['tokens']:+.2%} tokens" if worst else "no text beyond the corpus",
                      "yes" if row["within_limits"] else "**no**"))
    first = next((row for row in rows if "refused" not in row), None)
    of = (f" (of {first['tokens'][0]:,} tokens, {first['heads'][0]} heads / {first['neurons'][0]:,} FFN neurons; "
          f"decode at {' / '.join(sorted(first['decode'], key=int))} threads)") if first else ""
    text = "\n\n".join([
        f"# Language sets: {model}",
        f"One `make export LANGS=<set>` per set, with the default options{of}, its deployed file against the "
        "original's same quantization. Beyond the corpus: the kept language and source whose bits per byte rise "
        "most. Within limits: every quality limit of the report (`Quality limits`) holds for every kept language.",
        markdown_table(["kept", "tokens", "heads / FFN neurons", "file", "decode", "worst beyond the corpus",
                        "within limits"], table)])
    (folder / "languages.md").write_text(text + "\n")
    return folder / "languages.md"
