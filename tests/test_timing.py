"""Each export step's time and its own peak memory (`timing.timed` with peaks)."""

import json
import subprocess
import sys

from langprune.timing import timed


def _in_a_fresh_process(code: str) -> dict:
    """Run `code` in a new interpreter and read the JSON it prints last: the suite's own process holds gigabytes its
    earlier tests left with the allocator, which hides a step's few hundred MB (CI, 7 December: two steps of 600 and
    50 MB both read 5,006 MB)."""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return json.loads(out.splitlines()[-1])


def test_each_steps_peak_is_its_own():
    got = _in_a_fresh_process(
        "import json, time\n"
        "from langprune.timing import peak_rss_mb, rss_mb, timed\n"
        "seconds, peaks = {}, {}\n"
        "base = rss_mb()\n"
        "with timed(seconds, 'large', peaks):\n"
        "    block = b'\\1' * (600 << 20)  # 600 MB written, so resident\n"
        "    time.sleep(0.3)\n"
        "    del block\n"
        "with timed(seconds, 'small', peaks):\n"
        "    block = b'\\1' * (50 << 20)\n"
        "    del block\n"
        "print(json.dumps(dict(seconds=seconds, peaks=peaks, base=base, high_water=peak_rss_mb())))")
    peaks = got["peaks"]
    assert set(got["seconds"]) == set(peaks) == {"large", "small"}
    assert peaks["large"] >= got["base"] + 600 - 1  # the step's own 600 MB on top of what it began with (MB, rounded)
    # each step's own: not the process's high-water mark, which the large step set
    assert peaks["small"] < peaks["large"] - 400 and got["high_water"] >= peaks["large"] - 1


def test_a_step_without_peaks_records_its_time_only():
    seconds = {}
    with timed(seconds, "step"):
        pass
    assert list(seconds) == ["step"] and seconds["step"] >= 0


def test_a_peak_inside_one_call_is_not_missed():
    """A spike inside one call that holds the GIL (an exporter serializing a model) is gone before the sampling
    thread runs: the process's high-water mark, raised in the step, still gives it."""
    got = _in_a_fresh_process(
        "import json\n"
        "from langprune.timing import timed; s, p = {}, {}\n"
        "with timed(s, 'spike', p): len(b'\\1' * (400 << 20) + b'\\2')\n"
        "print(json.dumps(p))")
    assert got["spike"] >= 400 * 2  # 400 MB and its copy, both whole at once


def test_a_step_starts_from_what_the_process_holds_not_what_it_freed():
    """Tensors under glibc's mmap threshold (raised up to 32 MB as larger blocks are freed) come from the heap, and
    freed between live ones they stay resident: the next step starts from them unless they are given back."""
    got = _in_a_fresh_process(
        "import json, torch\n"
        "from langprune.timing import rss_mb, timed\n"
        "torch.ones(16 << 18).sum()  # a 16 MB block freed: glibc's threshold rises to it\n"
        "start = rss_mb()\n"
        "blocks = [torch.ones(4 << 18) for _ in range(100)]  # 400 MB in 4 MB tensors, from the heap\n"
        "kept = blocks[1::2]  # every other one freed: 200 MB in the middle of the heap\n"
        "del blocks\n"
        "freed = rss_mb()\n"
        "seconds, peaks = {}, {}\n"
        "with timed(seconds, 'next', peaks): pass\n"
        "print(json.dumps(dict(start=start, freed=freed, next=peaks['next'])))")
    assert got["freed"] > got["start"] + 350  # what makes the test: freed, yet resident
    assert got["next"] < got["start"] + 250, got  # the 200 MB still held, and not the 200 freed
