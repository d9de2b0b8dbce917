"""Speed as llama.cpp users quote it (`measure/llama_bench.py`): pp512 and tg128, mean ± standard deviation of
fresh-process runs, each file against a baseline; in an export's report, the deployed file, original against
pruned."""

from ..measure.llama_bench import ratios
from .tables import markdown_table


def speed_table(bench: dict, baseline: str) -> str:
    """Every file at every thread count: each test's tokens/s and its ratio to the `baseline` file's, and the
    runs' peak memory."""
    files, rows = bench["files"], []
    for label, by_threads in files.items():
        for threads, tests in by_threads.items():
            row = [label, threads]
            for test, figures in tests.items():
                base = files[baseline][threads][test]["mean"]
                row += [f"{figures['mean']:.1f} ± {figures['sd']:.1f}", f"{figures['mean'] / base:.3f}"]
            peak = bench.get("peak_rss_mb", {}).get(label, {}).get(threads)  # a report from before it was read
            rows.append((*row, "-" if peak is None else f"{peak:.0f}"))
    tests = next(iter(next(iter(files.values())).values()))
    header = ["file", "threads"] + [h for test in tests for h in (f"{test} (tok/s)", "ratio")] + ["peak RSS MB"]
    busy = (f"Spread over the limit even when measured again (the machine was busy): {'; '.join(bench['busy'])}."
            if bench["busy"] else "Every spread within the limit.")
    return (f"llama-bench ({bench['tool']}, built from the llama.cpp that llama-cpp-python vendors): mean ± standard "
            f"deviation of {bench['reps']} runs, each a fresh process, the files' runs interleaved; ratios against "
            f"{baseline}. {busy}{build_text(bench)}\n\n" + markdown_table(header, rows))


def build_text(measured: dict) -> str:
    """Which llama.cpp build measured, on which CPU, with which of its features ("" for a report from before it was
    recorded)."""
    info = measured.get("llama_cpp")
    if not info:
        return ""
    return (f" llama.cpp: the {info['build']} build (`{info['library']}`) on {info['cpu']}; its CPU features: "
            f"`{info['features']}`.")


def llama_bench_rows(report: dict) -> list[tuple[str, str, str, str]]:
    """Summary rows: (what, before, after, after/before) per test and thread count."""
    bench = report.get("llama_bench")
    if not bench:
        return []
    files = bench["files"]
    return [(f"{bench['file']}: {test} tok/s (llama-bench), {threads} thread(s)", f"{before[test]['mean']:.1f}",
             f"{files['after'][threads][test]['mean']:.1f}",
             f"{files['after'][threads][test]['mean'] / before[test]['mean']:.3f}")
            for threads, before in files["before"].items() for test in before]


def llama_bench_text(report: dict) -> list[str]:
    bench = report.get("llama_bench")
    if not bench:
        return []
    return [f"## Speed in llama-bench (the deployed file, `{bench['file']}`)", speed_table(bench, "before")]


def decode_ratios(report: dict) -> dict[str, float]:
    """{threads: the deployed file's decode speed after / before}: llama-bench's tg128 (reports from before it
    ran in every export: the Python measure's decode)."""
    bench = report.get("llama_bench")
    if bench:
        return {t: by_test["tg128"] for t, by_test in ratios(bench, "after", "before").items()}
    return {t: row["decode_tps_ratio"] for t, row in report["speed"][report["deployed"]].items()}


def deployed_peak_rss(report: dict) -> dict[str, float]:
    """{threads: the pruned deployed file's peak memory in MB} as it decoded (llama-bench's runs; older reports:
    the Python measure's)."""
    bench = report.get("llama_bench")
    if bench and "peak_rss_mb" in bench:
        return bench["peak_rss_mb"]["after"]
    return {t: row["peak_rss_mb_after"] for t, row in report["speed"].get(report["deployed"], {}).items()}
