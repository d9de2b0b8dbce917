"""What the report's tables share: a markdown table, a figure's change against the original, and each kept
language's quality against the limits (`options.QUALITY_LIMITS`)."""

from ..options import QUALITY_LIMITS


def markdown_table(header: list[str], rows: list) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def limit_rows(report: dict) -> list[tuple[str, str, str, str]]:
    """(what, limit, measured, within?) for each kept language in the deployed file."""
    key = report["deployed"]
    runs = report["quality"][key]
    rows = []
    for lang in report["languages"]["kept"]:
        rise = runs["after"][lang]["bits_per_byte"] / runs["before"][lang]["bits_per_byte"] - 1
        rows.append((f"bits/byte, {lang} evaluation, change", f"<= +{QUALITY_LIMITS['kept_bpb_rise']:.0%}",
                     f"{rise:+.2%}", rise <= QUALITY_LIMITS["kept_bpb_rise"]))
    rows += _outside_limit_rows(report)
    return [(what, limit, reached, "yes" if met else "no") for what, limit, reached, met in rows]


def limits_verdict(rows) -> str:
    outside = [f"{what} {measured}" for what, _, measured, within in rows if within != "yes"]
    if not outside:
        return "Every kept language is within every limit."
    return f"**Not within the limits**: {'; '.join(outside)}."


def changes(before: dict, after: dict) -> tuple[float, float]:
    """(token count change, bits per byte change) of one text's quality figures, after against before."""
    return after["tokens"] / before["tokens"] - 1, after["bits_per_byte"] / before["bits_per_byte"] - 1


def outside_changes(report: dict, source: str, lang: str) -> tuple[float, float]:
    """`changes` of the export against the original on one text beyond the corpus."""
    q = report["outside"]["quality"][source]
    return changes(q["before"][lang], q["after"][lang])


def _outside_limit_rows(report: dict) -> list:
    outside = report.get("outside")
    if not outside:
        return []
    rows = []
    for source, quality in outside["quality"].items():
        for lang in (lang for lang in report["languages"]["kept"] if lang in quality["before"]):
            tokens, bpb = outside_changes(report, source, lang)
            rows += [(f"tokens, {lang} {source}, change", f"<= +{QUALITY_LIMITS['outside_token_rise']:.1%}",
                      f"{tokens:+.2%}", tokens <= QUALITY_LIMITS["outside_token_rise"]),
                     (f"bits/byte, {lang} {source}, change", f"<= +{QUALITY_LIMITS['outside_bpb_rise']:.0%}",
                      f"{bpb:+.2%}", bpb <= QUALITY_LIMITS["outside_bpb_rise"])]
    return rows
