"""Wall time of the export's phases: every phase prints its time and the report lists them."""

import time
from contextlib import contextmanager

from .log import say


@contextmanager
def timed(seconds: dict, name: str):
    """Record the block's wall time in seconds[name] and print it."""
    start = time.perf_counter()
    yield
    seconds[name] = round(time.perf_counter() - start, 1)
    say(f"   {name}: {seconds[name]:.0f}s")
