"""What the lab-facing commands share: finding the lab a command acts on, and running throwaway labs."""

from __future__ import annotations

import argparse
import subprocess
import sys

from kalab.model.clientsite import ClientPlace
from kalab.model.errors import KalabError


def add_lab_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name", help="which lab (default: $KALAB_LAB, else 'default')")


def running_lab_clients(name: str | None) -> ClientPlace | None:
    """Where the clients of the lab `name` live (its bastion, as its kubeconfig's site says), if that lab is up."""
    from kalab.lab import control
    from kalab.lab.site import LabSite

    info = control.status(name)
    return LabSite(info.state_dir).clients if info.ready else None


def in_private_tree(args: argparse.Namespace) -> int | None:
    """Run this same command again as PID 1 of a private namespace tree, for a throwaway data plane.

    Returns its exit status; None when this process already runs in a tree (then the caller does the work). The
    kernel ends everything the command started when it ends, however it ends (Ctrl-C and kill -9 included).
    """
    from kalab.lab.dataplane import tree
    from kalab.lab.prerequisites import lab_problem

    if tree.inside():
        return None
    problem = lab_problem()
    if problem:
        raise KalabError(problem)
    # setpriv: if this command is killed, its tree goes too (unshare then SIGKILLs the tree's PID 1).
    command = ["setpriv", "--pdeathsig", "KILL", "--", *tree.tree_command([sys.executable, "-m", "kalab", *args.argv])]
    # On Ctrl-C, subprocess.run kills the tree's `setpriv`/`unshare` (the kernel ends the rest) and re-raises here.
    return subprocess.run(command).returncode
