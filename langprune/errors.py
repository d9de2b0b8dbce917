"""Errors a user can act on. The CLI prints them without a traceback, in one line."""

import os
import shlex
import signal
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
    saying what could not be done, how the tool ended and the command that reruns it, with the end of its output."""
    command = [str(c) for c in command]
    try:
        result = subprocess.run(command, capture_output=True, text=True, cwd=cwd, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise UserError(f"could not {what}: no answer after {timeout} s; rerun: {shlex.join(command)}") from None
    if result.returncode != 0:
        raise UserError(failed(what, command, result.returncode, result.stdout + result.stderr))


def failed(what: str, command: list[str], returncode: int, output: str = "") -> str:
    """One line saying what could not be done, how the process ended (its exit status, or the signal that killed
    it) and the command that reruns it; then the end of its output, if any."""
    line = f"could not {what}: {ended(returncode)}; rerun: {shlex.join(str(c) for c in command)}"
    output = output.strip()
    return f"{line}\n{output[-3000:]}" if output else line


def ended(returncode: int) -> str:
    """How a process ended, from subprocess's return code (minus the signal's number when a signal killed it)."""
    if returncode >= 0:
        return f"exit status {returncode}"
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        name = f"signal {-returncode}"
    crash = " (it crashed)" if -returncode in (signal.SIGSEGV, signal.SIGILL, signal.SIGBUS, signal.SIGFPE) else ""
    return f"killed by {name}{crash}"
