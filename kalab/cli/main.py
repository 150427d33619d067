"""Entry point of the `kalab` command: builds the parser from the command modules and reports errors briefly."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn, cast

from kalab.model.errors import KalabError

Handler = Callable[[argparse.Namespace], int]


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one sentence with a pointer to --help, not a usage dump."""

    def error(self, message: str) -> NoReturn:
        sentence = message[0].upper() + message[1:] if message else "Invalid arguments"
        sys.stderr.write(f"{self.prog}: error: {sentence.rstrip('.')}; see `{self.prog} --help`.\n")
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(argv if argv is not None else sys.argv[1:])  # for commands that run again inside a lab
    handler: Handler = args.handler
    try:
        return handler(args)
    except KalabError as err:
        sys.stderr.write(f"kalab: error: {err}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("kalab: interrupted.\n")
        return 130
    except BrokenPipeError:
        # `kalab render ... | head` closing the pipe early is not an error worth a traceback.
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
