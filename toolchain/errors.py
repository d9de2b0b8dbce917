"""Errors a user can act on. The CLI prints them without a traceback."""


class UserError(Exception):
    """Bad input: an unknown language, an unsupported model, an impossible budget."""
