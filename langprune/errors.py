"""Errors a user can act on. The CLI prints them without a traceback, in one line."""

import os


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
