"""Each export step's time and its own peak memory (`timing.timed` with peaks)."""

import time

from langprune.timing import peak_rss_mb, timed


def test_each_steps_peak_is_its_own():
    seconds, peaks = {}, {}
    with timed(seconds, "large", peaks):
        block = b"\x01" * (600 << 20)  # 600 MB written, so resident
        time.sleep(0.3)
        del block
    with timed(seconds, "small", peaks):
        block = b"\x01" * (50 << 20)
        del block
    assert set(seconds) == set(peaks) == {"large", "small"}
    assert peaks["large"] >= 600  # the step's own 600 MB on top of what it began with
    # each step's own: not the process's high-water mark, which the large step set
    assert peaks["small"] < peaks["large"] - 400 and peak_rss_mb() >= peaks["large"] - 1  # MB, rounded


def test_a_step_without_peaks_records_its_time_only():
    seconds = {}
    with timed(seconds, "step"):
        pass
    assert list(seconds) == ["step"] and seconds["step"] >= 0


def test_a_peak_inside_one_call_is_not_missed():
    """A spike inside one call that holds the GIL (an exporter serializing a model) is gone before the sampling
    thread runs: the process's high-water mark, raised in the step, still gives it."""
    import subprocess
    import sys

    code = ("from langprune.timing import timed; s, p = {}, {}\n"
            "with timed(s, 'spike', p): len(b'\\1' * (400 << 20) + b'\\2')\n"
            "print(p['spike'])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert float(out.split()[-1]) >= 400 * 2  # 400 MB and its copy, both whole at once
