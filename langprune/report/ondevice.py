"""The report's "On-device" section (`make mobile-check`): ONNX Runtime Mobile and llama.cpp on arm64."""

from .speed import deployed_peak_rss
from .tables import markdown_table


def mobile_text(report: dict) -> list[str]:
    mobile = report.get("mobile")
    if not mobile:
        return ["## On-device", "Not checked: `make mobile-check` checks this export for ONNX Runtime Mobile and for "
                "llama.cpp on arm64."]
    return ["## On-device", *_ort_mobile_text(mobile["ort"]),
            *_arm64_text(mobile.get("arm64"), report)]


def _arm64_text(arm: dict | None, report: dict) -> list[str]:
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
                           [_arm64_row(checked, deployed_peak_rss(report) if f"gguf {kind}" == report["deployed"]
                                       else {}) for kind, checked in arm["files"].items()])]


def _arm64_row(checked: dict, peaks: dict) -> tuple:
    langs = checked["languages"]
    peak = ", ".join(f"{mb:.0f} ({threads} thr)" for threads, mb in peaks.items() if mb is not None) or "-"
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
