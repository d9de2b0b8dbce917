"""Wall time and peak memory of the export's phases: every phase prints them and the report lists them."""

import ctypes
import gc
import os
import threading
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

from .log import say

POLL_S = 0.05  # how often a step's resident memory is read


@contextmanager
def timed(seconds: dict, name: str, peaks: dict | None = None):
    """Record the block's wall time in seconds[name] and print it; with `peaks`, also this process's resident memory
    at its highest in the block, in MB, in peaks[name] (`highest_rss`), from what the process holds once it has given
    back what it freed (`give_back_freed_memory`). Worker processes (speed runs, llama-bench) measure their own."""
    if peaks is not None:
        give_back_freed_memory()
    start = time.perf_counter()
    with highest_rss() if peaks is not None else nullcontext() as highest:
        yield
    seconds[name] = round(time.perf_counter() - start, 1)
    if highest is not None:
        peaks[name] = round(highest[0])
    say(f"   {name}: {seconds[name]:.0f}s" + (f", peak {peaks[name] / 1024:.2f} GB" if highest is not None else ""))


@contextmanager
def highest_rss():
    """A one-item list holding this process's highest resident memory (MB) in the block: read every POLL_S by a
    thread, and exact where the block raised the process's high-water mark (VmHWM: a peak inside one call that holds
    the GIL, such as an exporter's serialization, is then not missed). The mark is never reset (clear_refs): that
    would hide the true peak from `/usr/bin/time -v`, which reads it at exit."""
    highest, stop, mark = [rss_mb()], threading.Event(), peak_rss_mb()

    def sample() -> None:
        while not stop.wait(POLL_S):
            highest[0] = max(highest[0], rss_mb())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield highest
    finally:
        stop.set()
        sampler.join()
        raised = peak_rss_mb()
        highest[0] = max(highest[0], rss_mb(), raised if mark is not None and raised > mark else 0)


def give_back_freed_memory() -> None:
    """Hand what the process has freed back to the system: Python's cycles collected, then glibc's heap trimmed
    (malloc_trim). Freed tensors smaller than glibc's mmap threshold, which rises to 32 MB as larger blocks are freed,
    stay in the heap otherwise, and a step's peak would carry the last step's freed float32 copies. Only the trim is
    skipped without glibc."""
    gc.collect()
    trim = getattr(ctypes.CDLL(None), "malloc_trim", None)  # the process's own C library
    if trim is not None:
        trim(0)


def rss_mb() -> float:
    """This process's resident memory now (Linux's /proc/self/statm)."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb(pid: int | str = "self") -> float | None:
    """The peak resident memory (VmHWM) of process `pid` while it runs; None once it has exited (or without /proc).
    Not ru_maxrss (getrusage, wait4): Linux carries that over from the parent across fork and exec, so a process
    started by a 10 GB export would report 10 GB."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return None
    return next((int(line.split()[1]) / 1024 for line in lines if line.startswith("VmHWM:")), None)
