"""What langprune says while it works: phase lines and progress bars, through `logging` ("langprune").

A library says nothing by default: its lines are INFO messages, and its progress bars show only
where those are shown; only its warnings reach a script that configured nothing. The command line
turns both on (`show_progress`); a script can too, or configure logging as it likes.
"""

import logging
import sys
from contextlib import contextmanager

LOG = logging.getLogger("langprune")
NATIVE = logging.getLogger("langprune.llama_cpp")


def say(message: str) -> None:
    LOG.info(message)


def warn(message: str) -> None:
    """A warning: shown to a script too (Python prints an unhandled WARNING on stderr), not only to the CLI."""
    LOG.warning(message)


def showing() -> bool:
    """Whether langprune's INFO messages, and so its progress bars, are shown."""
    return LOG.isEnabledFor(logging.INFO)


def progress(*args, **kwargs):
    """A tqdm progress bar, shown where langprune's INFO messages are. (tqdm is imported here, not with the package:
    `import langprune` needs the standard library only, so the aarch64 Python of `measure/arm64.py`, which has just
    numpy and onnxruntime, can run `measure/ort_greedy.py`.)"""
    from tqdm import tqdm

    return tqdm(*args, disable=not showing(), **kwargs)


def show_progress(stream=sys.stdout) -> None:
    """Print langprune's messages, bare, to stream, and show its progress bars (the command line's setting)."""
    if not LOG.handlers:
        handler = logging.StreamHandler(stream)
        handler.setFormatter(logging.Formatter("%(message)s"))
        LOG.addHandler(handler)
    LOG.setLevel(logging.INFO)
    LOG.propagate = False


_native_lines: list[list[str]] = []  # the lists llama.cpp's log lines go to, besides NATIVE (`llama_cpp_log`)
_native_callback = None  # the ctypes callback llama.cpp holds; kept here so Python never frees it


def quiet_llama_cpp() -> None:
    """Route llama.cpp's native log to the "langprune.llama_cpp" logger (DEBUG), never to stderr. llama-cpp-python's
    own callback reads ggml's log levels as an older llama.cpp numbered them (WARN is now 3, which it takes for
    ERROR), so with verbose=False it still prints warnings such as `using full-size SWA cache`."""
    global _native_callback
    if _native_callback is None:
        import ctypes

        from .llama_runtime import import_llama_cpp

        llama_cpp = import_llama_cpp()

        @llama_cpp.llama_log_callback
        def route(level, text, user_data):
            line = text.decode("utf-8", errors="replace")
            NATIVE.debug(line.rstrip("\n"))
            for lines in _native_lines:
                lines.append(line)

        _native_callback = route
        llama_cpp.llama_log_set(_native_callback, ctypes.c_void_p(0))


@contextmanager
def llama_cpp_log():
    """The lines llama.cpp logs inside the block (a list, filled as it runs), e.g. to show on a failure."""
    quiet_llama_cpp()
    lines: list[str] = []
    _native_lines.append(lines)
    try:
        yield lines
    finally:
        _native_lines.remove(lines)
