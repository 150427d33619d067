"""`kalab render <what>`: print manifests and keepalived.conf; one sub-command per thing to render."""

from __future__ import annotations

import argparse

from kalab.cli import render_conf, render_manifests


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "render",
        help="print manifests (YAML, or JSON with --json) or the operator's keepalived.conf",
        description="Print what a step applies, without touching any cluster.",
    )
    what = parser.add_subparsers(dest="what", required=True, metavar="WHAT")
    render_manifests.register(what)
    render_conf.register(what)
