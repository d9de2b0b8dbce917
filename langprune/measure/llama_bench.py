"""Speed as llama.cpp users quote it: `llama-bench`'s pp512 (prompt tokens/s) and tg128 (generated tokens/s).

llama-bench is built once for this machine (`llama_tools`). Each measurement is a fresh llama-bench process
running the tests asked (both by default) once after its own warm-up; the files' runs interleave, round after round,
so a slower minute of the machine falls on every file alike. A spread over BUSY_SPREAD says the machine was busy:
that test's rounds at that thread count are measured again once, every file's, and a spread still over it is
flagged in the result, never hidden. A time budget bounds the rounds: a model that takes longer a token gets fewer
of them, never fewer than MIN_REPS, so the cost of a measurement follows the budget, not the model.
"""

import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from ..errors import UserError, failed
from ..llama_runtime import system_info
from ..llama_tools import llama_tool
from ..log import progress, say
from ..timing import peak_rss_mb

TESTS = {"pp512": (512, 0), "tg128": (0, 128)}  # llama-bench's names: (prompt tokens, generated tokens)
BUSY_SPREAD = 0.05  # sample standard deviation / mean of a file's runs
POLL_S = 0.05  # how often a run's peak memory is read
MIN_REPS = 3  # rounds a budget never cuts below
RUN_TIMEOUT = 900  # one llama-bench process (a 1B F16 model's pp512 and tg128 on one core: ~2 minutes)


def bench_once(binary: Path, path: Path, threads: int, tests: tuple[str, ...] = tuple(TESTS)) -> dict[str, float]:
    """{"pp512": tokens/s, "tg128": tokens/s (those of `tests`), "peak_rss_mb": its peak memory} of one fresh
    llama-bench process (a test of 0 tokens is not run)."""
    command = [str(binary), "-m", str(path), "-t", str(threads), "-r", "1", "-o", "json",
               "-p", str(TESTS["pp512"][0] if "pp512" in tests else 0),
               "-n", str(TESTS["tg128"][1] if "tg128" in tests else 0)]
    status, stdout, stderr, peak_mb = _run(command, RUN_TIMEOUT)
    if status is None:
        raise UserError(f"llama-bench on {path} gave no answer after {RUN_TIMEOUT} s")
    if status:
        raise UserError(failed(f"measure {path.name} with llama-bench", command, status, stderr))
    speeds = {name: row["avg_ts"] for row in json.loads(stdout) for name, (p, g) in TESTS.items()
              if (row["n_prompt"], row["n_gen"]) == (p, g)}
    return {**speeds, "peak_rss_mb": peak_mb}


def _run(command: list[str], timeout: float) -> tuple[int | None, str, str, float | None]:
    """(exit status, None if killed after `timeout` s; stdout; stderr; peak RSS in MB) of one process. The peak is
    read from the process itself while it runs (`timing.peak_rss_mb`, a high-water mark: its last reading is the
    peak unless the process grew in its last POLL_S)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen(command, stdout=out, stderr=err, text=True)
        peak, deadline = None, time.monotonic() + timeout
        while process.poll() is None:
            if time.monotonic() > deadline:
                process.kill()
                process.wait()
                return None, "", "", peak
            peak = peak_rss_mb(process.pid) or peak
            time.sleep(POLL_S)
        out.seek(0)
        err.seek(0)
        return process.returncode, out.read(), err.read(), peak


def bench(files: dict[str, Path], threads: tuple[int, ...] = (1, 2), reps: int = 5,
          tests: tuple[str, ...] = tuple(TESTS), budget_s: float | None = None) -> dict:
    """{label: {threads: {test: {"mean", "sd", "spread", "runs"}}}} and "busy" (the tests still spread over
    BUSY_SPREAD after the second measurement, if any), for every file in `files` and each of `tests`, runs
    interleaved: `reps` rounds, or with `budget_s` as many as fit in it (at least MIN_REPS; "reps": the rounds run)."""
    binary = llama_tool("llama-bench")
    runs = _rounds(binary, files, threads, reps, tests, budget_s)
    reps = len(next(iter(runs.values())))
    busy = {(t, test) for _, t, test in _busy(runs)}
    for t in threads:
        busy_tests = tuple(test for test in tests if (t, test) in busy)
        if busy_tests:
            say(f"   llama-bench: a spread over {BUSY_SPREAD:.0%} in {', '.join(busy_tests)} at {t} thread(s), the "
                "machine was busy; measuring those again")
            runs |= {key: values for key, values in _rounds(binary, files, (t,), reps, busy_tests).items()
                     if key[2] in busy_tests}  # the peak memory stays the first rounds', which ran every test
    table = {label: {t: {test: _summary(runs[(label, t, test)]) for test in tests} for t in threads}
             for label in files}
    peaks = {label: {t: max(filter(None, runs[(label, t, "peak_rss_mb")]), default=None) for t in threads}
             for label in files}
    return {"files": table, "busy": sorted(f"{label}, {t} threads, {test}" for label, t, test in _busy(runs)),
            "peak_rss_mb": peaks, "reps": reps, "tool": binary.name, "llama_cpp": system_info()}


def _rounds(binary: Path, files: dict[str, Path], threads: tuple[int, ...], reps: int, tests: tuple[str, ...],
            budget_s: float | None = None) -> dict:
    """{(label, threads, test or "peak_rss_mb"): [every run's figure]}: `reps` rounds, or fewer where `budget_s`
    would not hold another (at their mean length so far; never fewer than MIN_REPS)."""
    runs = {(label, t, test): [] for label in files for t in threads for test in (*tests, "peak_rss_mb")}
    start = time.monotonic()
    with progress(total=reps * len(files) * len(threads), desc="llama-bench (interleaved)", unit="run") as bar:
        for done in range(reps):
            if budget_s is not None and done >= MIN_REPS and (time.monotonic() - start) * (done + 1) / done > budget_s:
                say(f"   llama-bench: {done} rounds, as many as fit in {budget_s:.0f} s")
                break
            for t in threads:
                for label, path in files.items():
                    for test, value in bench_once(binary, path, t, tests).items():
                        runs[(label, t, test)].append(value)
                    bar.update(1)
    return runs


def _busy(runs: dict) -> list[tuple]:
    return [key for key, values in runs.items() if key[2] in TESTS and _summary(values)["spread"] > BUSY_SPREAD]


def _summary(values: list[float]) -> dict:
    mean = statistics.fmean(values)
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": mean, "sd": sd, "spread": sd / mean, "runs": values}


def ratios(result: dict, after: str, before: str) -> dict:
    """{threads: {test: after's mean / before's}}."""
    files = result["files"]
    return {t: {test: files[after][t][test]["mean"] / files[before][t][test]["mean"] for test in files[after][t]}
            for t in files[after]}
