"""llama-bench, built for this machine from the llama.cpp llama-cpp-python vendors: pp512 and tg128 of real GGUF
files in fresh processes, interleaved; a spread that says the machine was busy is measured again, then flagged."""

import itertools
import json

from langprune.exporters.export_gguf import export_gguf
from langprune.llama_runtime import build_dir
from langprune.measure import llama_bench
from langprune.model.parts import HEADS
from tests.tiny import tiny_model, tiny_tokenizer


def test_llama_bench_measures_gguf_files_interleaved(tmp_path, monkeypatch):
    order = []
    measure = llama_bench.bench_once

    def once(binary, path, threads, tests):
        order.append((path.stem, threads))
        return measure(binary, path, threads, tests)

    monkeypatch.setattr(llama_bench, "bench_once", once)
    full = export_gguf(tiny_model("llama"), None, tiny_tokenizer(), tmp_path / "full.gguf")
    pruned = export_gguf(HEADS.prune(tiny_model("llama"), [[0, 2], [1, 3], [0, 3]]), None, tiny_tokenizer(),
                         tmp_path / "pruned.gguf")
    balloon = bytearray(1500 * 2**20)  # this process's peak memory over 1.5 GB: not what its children report
    balloon[::4096] = b"\1" * len(range(0, len(balloon), 4096))
    del balloon
    result = llama_bench.bench({"before": full, "after": pruned}, threads=(1,), reps=2)
    assert order[:4] == [("full", 1), ("pruned", 1)] * 2  # round by round (a busy machine's tests measured again after)
    for label in ("before", "after"):
        for test in llama_bench.TESTS:
            figures = result["files"][label][1][test]
            assert len(figures["runs"]) == 2 and all(r > 0 for r in figures["runs"]), figures
            assert figures["mean"] > 0 and figures["spread"] == figures["sd"] / figures["mean"]
        assert 0 < result["peak_rss_mb"][label][1] < 1000  # llama-bench's own peak (a tiny model), not its parent's
    ratios = llama_bench.ratios(result, "after", "before")
    assert set(ratios[1]) == set(llama_bench.TESTS) and all(r > 0 for r in ratios[1].values())


def test_a_busy_machine_is_measured_again_then_flagged(monkeypatch, tmp_path):
    monkeypatch.setattr(llama_bench, "llama_tool", lambda name: tmp_path / name)
    busy = itertools.cycle([100.0, 150.0])  # a spread of 28%
    quiet = itertools.cycle([100.0, 101.0])
    series = {"busy": lambda: next(busy), "quiet": lambda: next(quiet)}
    calls = []

    def once(binary, path, threads, tests):  # tg128 as the file's name says, pp512 always quiet
        calls.append((path.name, tests))
        return {**{test: series["quiet" if test == "pp512" else path.name]() for test in tests}, "peak_rss_mb": 50.0}

    monkeypatch.setattr(llama_bench, "bench_once", once)
    result = llama_bench.bench({"a": tmp_path / "quiet"}, threads=(1,), reps=2)
    assert len(calls) == 2 and result["busy"] == []  # within the limit: measured once
    calls.clear()
    result = llama_bench.bench({"a": tmp_path / "busy"}, threads=(1,), reps=2)
    both = ("pp512", "tg128")
    assert calls == [("busy", both)] * 2 + [("busy", ("tg128",))] * 2  # only the busy test measured again
    assert result["busy"] == ["a, 1 threads, tg128"]
    assert result["files"]["a"][1]["tg128"]["spread"] > llama_bench.BUSY_SPREAD
    assert len(result["files"]["a"][1]["pp512"]["runs"]) == 2 and result["peak_rss_mb"]["a"][1] == 50.0


def test_a_time_budget_bounds_the_rounds(monkeypatch, tmp_path):
    """A slower model (longer runs) gets fewer rounds under the same budget, never fewer than MIN_REPS."""
    import time

    monkeypatch.setattr(llama_bench, "llama_tool", lambda name: tmp_path / name)
    run_s = {}

    def once(binary, path, threads, tests):
        time.sleep(run_s["now"])
        return {**{test: 100.0 for test in tests}, "peak_rss_mb": 50.0}

    monkeypatch.setattr(llama_bench, "bench_once", once)
    files = {"before": tmp_path / "a", "after": tmp_path / "b"}
    rounds = {}
    for name, seconds in (("fast", 0.02), ("slow", 0.1), ("slower than the budget", 0.6)):
        run_s["now"] = seconds
        result = llama_bench.bench(files, threads=(1,), reps=10, budget_s=1.1)
        rounds[name] = result["reps"]
        assert all(len(result["files"][f][1][test]["runs"]) == result["reps"] for f in files for test in ("pp512",
                                                                                                        "tg128"))
    # a round: 0.04 s fast (10 fit in 1.1 s), 0.2 s slow (5 fit), 1.2 s (none fits: the least, MIN_REPS)
    assert rounds == {"fast": 10, "slow": 5, "slower than the budget": llama_bench.MIN_REPS}, rounds


def test_bench_speed_command(tmp_path, capsys):
    from langprune.cli import main

    first = export_gguf(tiny_model("llama"), None, tiny_tokenizer(), tmp_path / "first.gguf")
    second = export_gguf(tiny_model("llama", seed=1), None, tiny_tokenizer(), tmp_path / "second.gguf")
    assert main(["bench-speed", str(first), str(second), "--threads", "1", "--reps", "2"]) == 0
    table = capsys.readouterr().out
    rows = [line for line in table.splitlines() if line.startswith(f"| {tmp_path}")]
    assert len(rows) == 2 and rows[0].count("| 1.000 |") == 2, table  # the baseline against itself
    build = json.loads((build_dir() / "build.json").read_text())["build"]  # the one prepare kept on this CPU
    assert f"llama.cpp: the {build} build" in table and "AVX2 = 1" in table  # which build measured, its features
    (tmp_path / "text.gguf").write_text("not a model")
    for bad, message in ((tmp_path / "none.gguf", ": no such file"),
                         (tmp_path / "text.gguf", " is not a readable GGUF")):
        assert main(["bench-speed", str(first), str(bad)]) == 2
        assert f"error: {bad}{message}" in capsys.readouterr().err


def test_a_report_from_before_peak_memory_was_read_still_renders():
    """`make bench` and `make mobile-check` re-render earlier exports' reports, whose llama-bench runs have no peaks."""
    from langprune.report.speed import deployed_peak_rss, speed_table

    figures = {"mean": 10.0, "sd": 0.1, "spread": 0.01, "runs": [10.0]}
    bench = {"files": {side: {"1": {"tg128": figures}} for side in ("before", "after")}, "busy": [], "reps": 1,
             "tool": "llama-bench"}
    assert "| after | 1 | 10.0 ± 0.1 | 1.000 | - |" in speed_table(bench, "before")
    older = {"llama_bench": bench, "deployed": "gguf Q4_K_M",
             "speed": {"gguf Q4_K_M": {"1": {"peak_rss_mb_after": 300.0}}}}  # the Python measure's peak then
    assert deployed_peak_rss(older) == {"1": 300.0}


def test_a_crashing_tool_is_one_line_naming_the_signal_and_the_command(tmp_path):
    import pytest

    from langprune.errors import UserError

    fake = tmp_path / "llama-bench"
    fake.write_text("#!/bin/sh\necho 'loading model' >&2\nkill -SEGV $$\n")
    fake.chmod(0o755)
    with pytest.raises(UserError) as error:
        llama_bench.bench_once(fake, tmp_path / "model.gguf", 2)
    first, *rest = str(error.value).splitlines()
    assert "killed by SIGSEGV (it crashed)" in first and first.startswith("could not measure model.gguf")
    assert f"rerun: {fake} -m {tmp_path / 'model.gguf'} -t 2" in first and rest == ["loading model"]
    from langprune.errors import run_tool

    with pytest.raises(UserError) as error:
        run_tool(["sh", "-c", "exit 3"], "do a thing")
    assert str(error.value) == "could not do a thing: exit status 3; rerun: sh -c 'exit 3'"
