"""Speed as llama.cpp users quote it (`measure/llama_bench.py`): pp512 and tg128, mean ± standard deviation of
fresh-process runs, each file against a baseline; in an export's report, the deployed file, original against
pruned."""

from .tables import markdown_table


def speed_table(bench: dict, baseline: str) -> str:
    """Every file at every thread count: each test's tokens/s and its ratio to the `baseline` file's."""
    files, rows = bench["files"], []
    for label, by_threads in files.items():
        for threads, tests in by_threads.items():
            row = [label, threads]
            for test, figures in tests.items():
                base = files[baseline][threads][test]["mean"]
                row += [f"{figures['mean']:.1f} ± {figures['sd']:.1f}", f"{figures['mean'] / base:.3f}"]
            rows.append(tuple(row))
    tests = next(iter(next(iter(files.values())).values()))
    header = ["file", "threads"] + [h for test in tests for h in (f"{test} (tok/s)", "ratio")]
    busy = (f"Spread over the limit even when measured again (the machine was busy): {'; '.join(bench['busy'])}."
            if bench["busy"] else "Every spread within the limit.")
    return (f"llama-bench ({bench['tool']}, built from the llama.cpp that llama-cpp-python vendors): mean ± standard "
            f"deviation of {bench['reps']} runs, each a fresh process, the files' runs interleaved; ratios against "
            f"{baseline}. {busy}\n\n" + markdown_table(header, rows))


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
