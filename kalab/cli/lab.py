"""`kalab lab up|down|status|list|exec|reset`: embedded labs as clusters you can point any client at."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from kalab.model.errors import KalabError

NAME_HELP = "which lab (default: $KALAB_LAB, else 'default'); each user has their own labs"


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "lab",
        help="start, stop, list, enter, reset or break embedded labs (local Kubernetes-compatible clusters)",
        description=(
            "A lab is a small OpenShift-like cluster on this machine: an API server on 127.0.0.1 and three nodes "
            "in network namespaces of the lab's own, with real keepalived, iptables and HTTP backends. It needs no "
            "root; every user may run several, side by side, each under its own name."
        ),
    )
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for verb, text in (
        ("up", "start the lab in the background (a no-op when it is up) and print how to use it"),
        ("down", "stop the lab: every process and namespace of it ends, and its files are removed"),
        ("status", "say whether the lab is up, where, and how to reach it"),
    ):
        sub = verbs.add_parser(verb, help=text, description=text[0].upper() + text[1:] + ".")
        sub.add_argument("--name", help=NAME_HELP)
        sub.add_argument("--json", action="store_true", help="print a JSON object")
        sub.set_defaults(handler=_HANDLERS[verb])
    listing = verbs.add_parser("list", help="list this user's labs", description="List this user's labs.")
    listing.add_argument("--json", action="store_true", help="print a JSON list")
    listing.set_defaults(handler=_list)
    enter = verbs.add_parser(
        "exec",
        help="run a command on a lab node (master-0..2, bastion), like `oc debug node/…`",
        description=(
            "Run COMMAND on a node of the lab (master-0, master-1, master-2) or on its bastion, the trainee's "
            "machine where the seed types `curl http://VIP/`. Output and exit status are the command's."
        ),
    )
    enter.add_argument("--name", help=NAME_HELP)
    enter.add_argument("node", metavar="NODE", help="master-0, master-1, master-2 or bastion")
    enter.add_argument("command", nargs=argparse.REMAINDER, metavar="-- COMMAND", help="the command and its arguments")
    enter.set_defaults(handler=_exec)
    _register_reset(verbs)
    _register_faults(verbs)


def _register_reset(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    resetting = verbs.add_parser(
        "reset",
        help="bring the lab to the state after notebook 01, 02 or 03 (or before 01) in seconds",
        description=(
            "Bring the running lab to a stage of the runbook through the same cluster verbs the notebooks use, "
            "up or down: installed (after 01: operator, node labels, KeepalivedGroup, SCC grant, keepalived "
            "pods), patched (after 02: + the externalIP CIDRs, with 02's undo journal), deployed (after 03: + the "
            "demo and its VIP on a node), or fresh (none of it). Going down undoes what the later notebooks did."
        ),
    )
    resetting.add_argument("--name", help=NAME_HELP)
    # Checked by the handler (stages.stage_index), so `kalab --help` need not import the cluster verbs.
    resetting.add_argument(
        "--to", default="deployed", metavar="STAGE", help="fresh, installed, patched or deployed (default: deployed)"
    )
    resetting.add_argument("--json", action="store_true", help="print a JSON object")
    resetting.set_defaults(handler=_reset)


def _reset(args: argparse.Namespace) -> int:
    from kalab.cluster import network, stages
    from kalab.cluster.connect import connect
    from kalab.lab import control

    stages.stage_index(args.to)  # a bad stage is said before anything is touched
    info = control.status(args.name)
    if not info.ready or info.kubeconfig is None:
        flag = "" if info.name == control.DEFAULT_NAME else f" --name {info.name}"
        raise KalabError(f"The lab {info.name} is not running; start it with `kalab lab up{flag}`.")
    started = time.monotonic()
    cluster = connect(str(info.kubeconfig))
    runbook = stages.Runbook(journal=network.journal_for(cluster))  # where notebook 02 keeps it
    done = stages.reset(cluster, args.to, runbook)
    seconds = time.monotonic() - started
    if args.json:
        print(
            json.dumps(
                {
                    "name": info.name,
                    "stage": done.stage,
                    "changes": done.changes,
                    "vip": done.vip,
                    "holder": done.holder,
                    "seconds": round(seconds, 2),
                },
                indent=2,
            )
        )
        return 0
    print(f"The lab {info.name} is {done.stage} (took {seconds:.1f} s).")
    for line in done.changes or ["nothing to change: it was there already"]:
        print(f"  {line}")
    if done.vip is not None:
        print(f"  VIP {done.vip} is on {done.holder}.")
    return 0


def _register_faults(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    breaking = verbs.add_parser(
        "break",
        help="break the lab with a fault of the troubleshooting catalog, for real (see `kalab lab faults`)",
        description=(
            "Make a fault of the troubleshooting catalog in the running lab, the way it happens in the field: "
            "through the API (labels, network config, annotations) or on the nodes (firewall, links). "
            "`kalab doctor --name LAB` finds it; `kalab lab heal` undoes it."
        ),
    )
    breaking.add_argument("--name", help=NAME_HELP)
    which = breaking.add_mutually_exclusive_group(required=True)
    which.add_argument("fault", nargs="?", metavar="ID", help="the fault's id")
    which.add_argument("--mystery", action="store_true", help="pick a reproducible fault at random; do not say which")
    breaking.set_defaults(handler=_break)
    healing = verbs.add_parser(
        "heal", help="undo a fault `kalab lab break` made (all of them without ID)", description="Undo faults."
    )
    healing.add_argument("--name", help=NAME_HELP)
    healing.add_argument("fault", nargs="?", metavar="ID", help="the fault's id (default: whatever is broken)")
    healing.set_defaults(handler=_heal)
    listing = verbs.add_parser("faults", help="list the catalog's faults and which the lab reproduces")
    listing.add_argument("--json", action="store_true", help="print a JSON list")
    listing.set_defaults(handler=_faults)


def _break(args: argparse.Namespace) -> int:
    from kalab.lab import faults

    if args.mystery:
        faults.mystery(args.name)
        print(
            "One fault is broken (which stays a mystery). Find it with `kalab doctor --name LAB`; undo it with "
            "`kalab lab heal`."
        )
        return 0
    faults.break_fault(args.name, args.fault)
    print(f"The lab has {args.fault} now; `kalab doctor` should name it. Undo it with `kalab lab heal {args.fault}`.")
    return 0


def _heal(args: argparse.Namespace) -> int:
    from kalab.lab import faults

    healed = faults.heal(args.name, args.fault)
    print(f"Healed {', '.join(healed)}." if healed else "Nothing to heal: the lab has no fault that `break` made.")
    return 0


def _faults(args: argparse.Namespace) -> int:
    from kalab.lab import faults

    listed = faults.faults()
    if args.json:
        print(json.dumps([f.to_dict() for f in listed], indent=2))
        return 0
    print(f"{'ID':<24} {'LAB':<4} WHAT (or why the lab cannot break it yet)")
    for f in listed:
        print(f"{f.id:<24} {'yes' if f.reproducible else 'no':<4} {f.why}")
    return 0


def _up(args: argparse.Namespace) -> int:
    from kalab.lab import control

    started = time.monotonic()
    info = control.up(args.name)
    if args.json:
        print(json.dumps({**info.to_dict(), "seconds": round(time.monotonic() - started, 2)}, indent=2))
        return 0
    flag = "" if info.name == control.DEFAULT_NAME else f" --name {info.name}"
    print(f"The lab {info.name} serves at {info.api} (took {time.monotonic() - started:.1f} s). Use it with:")
    print(f"  export KUBECONFIG={info.kubeconfig}")
    print("  kubectl get nodes")
    print(f"  kalab lab exec{flag} bastion -- curl -s http://VIP/")
    print(f"Stop it with: kalab lab down{flag}")
    return 0


def _down(args: argparse.Namespace) -> int:
    from kalab.lab import control

    name = control.lab_name(args.name)
    was_up = control.down(name)
    if args.json:
        print(json.dumps({"name": name, "was_up": was_up}))
    else:
        print(f"The lab {name} is down; nothing of it is left." if was_up else f"No lab {name} was running.")
    return 0


def _status(args: argparse.Namespace) -> int:
    from kalab.lab import control

    info = control.status(args.name)
    if args.json:
        print(json.dumps(info.to_dict(), indent=2))
        return 0
    if info.state == "down":
        flag = "" if info.name == control.DEFAULT_NAME else f" --name {info.name}"
        raise KalabError(f"The lab {info.name} is not running; start it with `kalab lab up{flag}`.")
    print(f"The lab {info.name} is {info.state}: API {info.api}, top process {info.pid}, KUBECONFIG={info.kubeconfig}")
    return 0


def _list(args: argparse.Namespace) -> int:
    from kalab.lab import control

    labs = control.list_labs()
    if args.json:
        print(json.dumps([info.to_dict() for info in labs], indent=2))
        return 0
    if not labs:
        print("No labs; start one with `kalab lab up [--name NAME]`.")
        return 0
    print(f"{'NAME':<16} {'STATE':<9} {'PID':>8}  API")
    for info in labs:
        print(f"{info.name:<16} {info.state:<9} {info.pid or '-':>8}  {info.api or '-'}")
    return 0


def _exec(args: argparse.Namespace) -> int:
    from kalab.lab import control
    from kalab.lab.dataplane.topology import Topology, TopologySpec

    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        raise KalabError("Give the command to run after --, e.g. `kalab lab exec bastion -- curl -s http://VIP/`.")
    topology = Topology(TopologySpec.seed())
    namespaces = {**{node: topology.node_ns(node) for node in topology.node_names}, "bastion": topology.bastion_ns}
    if args.node not in namespaces:
        raise KalabError(f'The lab has no node "{args.node[:40]}"; pick one of {", ".join(namespaces)}.')
    entry = control.status(args.name).entry()
    argv = entry.command(namespaces[args.node], command)
    sys.stdout.flush()
    os.execvpe(argv[0], argv, entry.env())  # the command's own output and exit status, as `oc debug node` gives


_HANDLERS = {"up": _up, "down": _down, "status": _status}
