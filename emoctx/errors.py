"""Errors a user can act on: the CLI prints their message without a traceback."""


class EmoctxError(Exception):
    """A problem with the user's input or set-up, explained in the message (what, where, what to do)."""
