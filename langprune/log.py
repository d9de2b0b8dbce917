"""What langprune says while it works: phase lines and progress bars, through `logging` ("langprune").

A library says nothing by default: its lines are INFO messages, and its progress bars show only
where those are shown; only its warnings reach a script that configured nothing. The command line turns both on (`show_progress`); a script can too, or
configure logging as it likes.
"""

import logging
import sys

LOG = logging.getLogger("langprune")


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
