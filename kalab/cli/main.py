"""Entry point of the `kalab` command: builds the parser from the command modules and reports errors briefly."""

from __future__ import annotations

import argparse
import math
import shlex
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, cast

from kalab.model.errors import KalabError
from kalab.model.wording import one_line, shorten

Handler = Callable[[argparse.Namespace], int]


def finite_float(text: str) -> float:
    """A number option's value: inf and nan parse as floats but no duration, rate or interval can be one."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{shorten(text, 40)!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{shorten(text.strip(), 40)!r} is not a finite number; give e.g. 1 or 0.5")
    return value


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one sentence with a pointer to --help, not a usage dump."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Every `type=float` option of every sub-command goes through finite_float (argparse looks types up here).
        self.register("type", float, finite_float)

    def error(self, message: str) -> NoReturn:
        sentence = message[0].upper() + message[1:] if message else "Invalid arguments"
        sys.stderr.write(one_line(f"{self.prog}: error: {sentence.rstrip('.')}; see `{self.prog} --help`.") + "\n")
        raise SystemExit(2)


def build_parser() -> Parser:
    # Imported here so that `kalab --help` stays cheap and each command module owns its own options.
    from kalab.cli import cidr, doctor, failover, lab, probe, render, run

    parser = Parser(prog="kalab", description="Runbook and embedded lab for the keepalived operator.")
    # Sub-parsers inherit Parser (one-sentence errors); command modules only need the ArgumentParser API.
    commands = cast(
        "argparse._SubParsersAction[argparse.ArgumentParser]",
        parser.add_subparsers(dest="command", required=True, metavar="COMMAND"),
    )
    cidr.register(commands)
    render.register(commands)
    run.register(commands)
    probe.register(commands)
    failover.register(commands)
    lab.register(commands)
    doctor.register(commands)
    return parser


def chosen_command(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The sub-command's own parser that `args` came through (`kalab lab down`'s for `kalab lab down …`)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            chosen = action.choices.get(getattr(args, action.dest, None) or "")
            if chosen is not None:
                return chosen_command(chosen, args)
    return parser


def _terminated(signum: int, frame: object) -> NoReturn:
    # SIGTERM (`kill`, a closing terminal's session manager) ends the command the way Ctrl-C does, so every
    # `finally` runs: a trial repairs what it broke, a throwaway data plane is closed, a half-written file is removed.
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminated)
    parser = build_parser()
    args, extras = parser.parse_known_args(argv)
    if extras:
        # argparse reports leftovers from the top parser; the sub-command's own --help is the one that helps.
        chosen_command(parser, args).error(f"unrecognized arguments: {shorten(shlex.join(extras), 80)}")
    args.argv = list(argv if argv is not None else sys.argv[1:])  # for commands that run again inside a lab
    handler: Handler = args.handler
    try:
        return handler(args)
    except KalabError as err:
        sys.stderr.write(one_line(f"kalab: error: {err}") + "\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("kalab: interrupted.\n")
        return 130
    except BrokenPipeError:
        # `kalab render ... | head` closing the pipe early is not an error worth a traceback.
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
