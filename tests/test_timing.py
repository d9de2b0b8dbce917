"""Each export step's time and its own peak memory (`timing.timed` with peaks)."""

from langprune.timing import peak_rss_mb, timed


def test_each_steps_peak_is_its_own():
    seconds, peaks = {}, {}
    start = peak_rss_mb()
    with timed(seconds, "large", peaks):
        block = b"\x01" * (600 << 20)  # 600 MB written, so resident
        del block
    with timed(seconds, "small", peaks):
        block = b"\x01" * (50 << 20)
        del block
    assert set(seconds) == set(peaks) == {"large", "small"}
    assert peaks["large"] >= 600 and peaks["large"] >= start  # the step's own 600 MB on top of what it began with
    # the high-water mark was reset as "small" began: its peak is not the earlier step's
    assert peaks["small"] < peaks["large"] - 400


def test_a_step_without_peaks_records_its_time_only():
    seconds = {}
    with timed(seconds, "step"):
        pass
    assert list(seconds) == ["step"] and seconds["step"] >= 0
