"""A process's peak resident memory, as Linux counts it for that process alone."""

from pathlib import Path


def peak_rss_mb(pid: int | str = "self") -> float | None:
    """The peak resident memory (VmHWM) of process `pid` while it runs; None once it has exited (or without /proc).
    Not ru_maxrss (getrusage, wait4): Linux carries that over from the parent across fork and exec, so a process
    started by a 10 GB export would report 10 GB."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return None
    return next((int(line.split()[1]) / 1024 for line in lines if line.startswith("VmHWM:")), None)
