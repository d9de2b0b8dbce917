"""Wall time and peak memory of the export's phases: every phase prints them and the report lists them."""

import time
from contextlib import contextmanager
from pathlib import Path

from .log import say


@contextmanager
def timed(seconds: dict, name: str, peaks: dict | None = None):
    """Record the block's wall time in seconds[name] and print it; with `peaks`, also this process's peak resident
    memory in the block, in MB, in peaks[name]: Linux's high-water mark (VmHWM), reset as the block starts
    (`reset_peak`), so nested blocks must not ask for it. Worker processes (speed runs, llama-bench) measure their
    own."""
    measured = peaks is not None and reset_peak()
    start = time.perf_counter()
    yield
    seconds[name] = round(time.perf_counter() - start, 1)
    if measured:
        peaks[name] = round(peak_rss_mb())
    say(f"   {name}: {seconds[name]:.0f}s" + (f", peak {peaks[name] / 1024:.2f} GB" if measured else ""))


def reset_peak() -> bool:
    """Set this process's VmHWM back to its present resident memory (Linux >= 4.0: clear_refs "5"); False where that
    cannot be done, and then no peak is recorded (a peak since the start would be another stage's)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return peak_rss_mb() is not None


def peak_rss_mb(pid: int | str = "self") -> float | None:
    """The peak resident memory (VmHWM) of process `pid` while it runs; None once it has exited (or without /proc).
    Not ru_maxrss (getrusage, wait4): Linux carries that over from the parent across fork and exec, so a process
    started by a 10 GB export would report 10 GB."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return None
    return next((int(line.split()[1]) / 1024 for line in lines if line.startswith("VmHWM:")), None)
