"""The ``emoctx`` command line: a thin shell over the Python API.

Each sub-command lives in ``emoctx/commands/<name>.py`` with three things: ``HELP`` (one line),
``add_arguments(parser)`` and ``run(args) -> int``. Command modules import heavy libraries inside ``run``
so that ``emoctx --help`` stays fast.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import logging
import sys

from emoctx import __version__
from emoctx.errors import EmoctxError
from emoctx.io import printable

# Sub-commands in the order ``--help`` lists them (the order of the data flow).
COMMANDS: tuple[str, ...] = (
    "convert",
    "annotate",
    "synth",
    "places365",
    "import-baseline",
    "train",
    "calibrate",
    "evaluate",
    "predict",
    "predict-records",
    "summarize",
    "export",
)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, one sub-parser per command."""
    parser = argparse.ArgumentParser(
        prog="emoctx",
        description="Context-aware emotion recognition: EMOTIC data tools, training, evaluation and prediction.",
        epilog="Run 'emoctx COMMAND --help' for the options of one command.",
    )
    parser.add_argument("--version", action="version", version=f"emoctx {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"emoctx.commands.{name.replace('-', '_')}")
        p = sub.add_parser(
            name,
            help=module.HELP,
            description=module.__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
            add_help=getattr(module, "ADD_HELP", True),
        )
        module.add_arguments(p)
        p.set_defaults(_run=module.run, _forward=getattr(module, "FORWARD_ARGS", False))
    return parser


def _command_given(argv: list[str]) -> str | None:
    """The first argument that is not one of the top-level options: the command the user typed."""
    for arg in argv:
        if arg in ("-h", "--help", "--version"):
            return None  # argparse answers these before looking at the command
        if not arg.startswith("-"):
            return arg
    return None


def check_command(parser: argparse.ArgumentParser, argv: list[str]) -> None:
    """Refuse an unknown command with the close matches among :data:`COMMANDS` (``predcit``: ``predict``).

    argparse's own message lists every command; a close match is what a typo needs.
    """
    given = _command_given(argv)
    if given is None or given in COMMANDS:
        return
    close = difflib.get_close_matches(given, COMMANDS, n=2, cutoff=0.6)
    hint = " or ".join(f"'{c}'" for c in close)
    parser.error(
        f"unknown command '{given}'"
        + (f"; did you mean {hint}?" if close else "")
        + f" (commands: {', '.join(COMMANDS)}; run 'emoctx --help')"
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``emoctx`` console script; returns the exit status."""
    parser = build_parser()
    check_command(parser, list(sys.argv[1:] if argv is None else argv))
    # Commands that wrap another parser (train: LightningCLI) receive the arguments they do not declare.
    args, extra = parser.parse_known_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # to repeat the command in messages
    if extra and not getattr(args, "_forward", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.forwarded = extra
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args._run(args) or 0)
    except (EmoctxError, FileNotFoundError) as e:
        message = e.for_cli() if isinstance(e, EmoctxError) else str(e)
        print(f"emoctx {args.command}: error: {printable(message)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"emoctx {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
