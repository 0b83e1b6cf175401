"""Errors a user can act on: the CLI prints their message without a traceback."""

from __future__ import annotations


class EmoctxError(Exception):
    """A problem with the user's input or set-up, explained in the message (what, where, what to do).

    Args:
        message: the explanation for Python users; where it says what to pass, it names the Python arguments.
        cli_message: the same explanation for command-line users, naming the command's options instead
            (``None``: the message serves both). The ``emoctx`` command prints this one.
    """

    def __init__(self, message: str, *, cli_message: str | None = None):
        super().__init__(message)
        self.cli_message = cli_message

    def for_cli(self) -> str:
        """The message the command line prints."""
        return self.cli_message if self.cli_message is not None else str(self)
