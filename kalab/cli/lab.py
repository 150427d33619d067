"""`kalab lab up|down|status`: the embedded lab as a cluster you can point any client at."""

from __future__ import annotations

import argparse
import json
import time

from kalab.model.errors import KalabError


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "lab",
        help="start, stop or inspect the embedded lab (a local Kubernetes-compatible cluster)",
        description=(
            "The lab is a small OpenShift-like cluster on this machine: an API server on 127.0.0.1 and three "
            "nodes in network namespaces, with real keepalived, iptables and HTTP backends."
        ),
    )
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for verb, text in (
        ("up", "start the lab in the background (a no-op when it is up) and print how to use it"),
        ("down", "stop the lab and remove everything it created"),
        ("status", "say whether the lab is up, where, and how to reach it"),
    ):
        sub = verbs.add_parser(verb, help=text, description=text[0].upper() + text[1:] + ".")
        sub.add_argument("--state-dir", help="where the lab keeps its files (default /run/kalab-lab)")
        sub.add_argument("--prefix", default="kalab-", help=argparse.SUPPRESS)
        sub.add_argument("--json", action="store_true", help="print a JSON object")
        sub.set_defaults(handler=_HANDLERS[verb])


def _up(args: argparse.Namespace) -> int:
    from kalab.lab import control

    started = time.monotonic()
    info = control.up(args.state_dir, args.prefix)
    if args.json:
        print(json.dumps({**info.to_dict(), "seconds": round(time.monotonic() - started, 2)}, indent=2))
        return 0
    print(f"The lab serves at {info.url} (took {time.monotonic() - started:.1f} s). Use it with:")
    print(f"  export KUBECONFIG={info.kubeconfig}")
    print("  kubectl get nodes")
    print("Stop it with: kalab lab down")
    return 0


def _down(args: argparse.Namespace) -> int:
    from kalab.lab import control

    was_up = control.down(args.state_dir, args.prefix)
    if args.json:
        print(json.dumps({"was_up": was_up}))
    else:
        print("The lab is down; nothing of it is left." if was_up else "No lab was running; leftovers swept.")
    return 0


def _status(args: argparse.Namespace) -> int:
    from kalab.lab import control

    info = control.status(args.state_dir)
    if args.json:
        print(json.dumps(info.to_dict() if info else {"ready": False}, indent=2))
        return 0
    if info is None:
        raise KalabError("No lab is running; start one with `kalab lab up`.")
    state = "ready" if info.ready else "starting"
    print(f"The lab is {state}: API {info.url}, daemon PID {info.pid}, KUBECONFIG={info.kubeconfig}")
    return 0


_HANDLERS = {"up": _up, "down": _down, "status": _status}
