"""Errors a user can act on. The CLI prints them without a traceback, in one line."""

import os
import subprocess


class UserError(Exception):
    """Bad input: an unknown language, an unsupported model, an impossible budget."""


def via_make() -> bool:
    """Whether the CLI runs under `make` (the Makefile sets LANGPRUNE_VIA=make)."""
    return os.environ.get("LANGPRUNE_VIA") == "make"


def option(name: str, value=None) -> str:
    """An option as the user typed it: a Make variable under `make`, a flag otherwise.
    option("heads", 1.0) is "HEADS=1.0" or "--heads 1.0"."""
    value = "''" if value == "" else value
    if via_make():
        return f"{name.upper().replace('-', '_')}={'' if value is None else value}"
    return f"--{name.replace('_', '-')}" + ("" if value is None else f" {value}")


def run_tool(command: list, what: str, cwd=None, timeout: int = 1800) -> None:
    """Run a command-line tool (npm, apt-get, a compiler); if it fails or hangs past timeout seconds, a UserError
    saying what could not be done, with the end of its output."""
    try:
        result = subprocess.run([str(c) for c in command], capture_output=True, text=True, cwd=cwd, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise UserError(f"could not {what}: no answer after {timeout} s") from None
    if result.returncode != 0:
        raise UserError(f"could not {what}:\n{(result.stdout + result.stderr)[-3000:]}")
