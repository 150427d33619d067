"""`kalab cidr plan|sizes`: check an externalIP block before patching the cluster network with it."""

from __future__ import annotations

import argparse
import json
import sys

from kalab.model.cidr import CidrPlan, plan_cidr, size_rows


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "cidr",
        help="plan the externalIP CIDR: what it covers and what it clashes with",
        description="Plan the block OpenShift assigns LoadBalancer addresses from.",
    )
    sub = parser.add_subparsers(dest="cidr_command", required=True, metavar="COMMAND", parser_class=type(parser))

    plan = sub.add_parser(
        "plan",
        help="normalise a CIDR, count its addresses and check it against the cluster's networks",
        description="Show the network a CIDR names, its size and usable range, with warnings and errors. "
        "Exits 1 when the CIDR cannot be used.",
    )
    plan.add_argument("cidr", metavar="CIDR", help="the auto-assign block, e.g. 172.21.6.32/27")
    plan.add_argument(
        "--allowed",
        action="append",
        default=[],
        metavar="CIDR",
        help="an allowedCIDRs entry of the externalIP policy (repeatable)",
    )
    plan.add_argument("--cluster-network", default="10.254.0.0/16", metavar="CIDR", help="default: %(default)s")
    plan.add_argument("--service-network", default="172.30.0.0/16", metavar="CIDR", help="default: %(default)s")
    plan.add_argument(
        "--machine-network",
        default="192.168.7.0/24",
        metavar="CIDR",
        help="the nodes' network; 'none' skips that check (default: %(default)s)",
    )
    plan.add_argument("--json", action="store_true", help="print the plan as a JSON object")
    plan.set_defaults(handler=run_plan)

    sizes = sub.add_parser(
        "sizes",
        help="how many addresses /24 … /28 blocks hold",
        description="The prefix-length table for choosing a block size.",
    )
    sizes.add_argument("--json", action="store_true", help="print the table as a JSON list")
    sizes.set_defaults(handler=run_sizes)


def run_plan(args: argparse.Namespace) -> int:
    plan = plan_cidr(
        args.cidr,
        allowed=args.allowed,
        cluster_network=args.cluster_network,
        service_network=args.service_network,
        machine_network=None if args.machine_network.lower() == "none" else args.machine_network,
    )
    if args.json:
        sys.stdout.write(json.dumps(plan.to_dict(), indent=2, ensure_ascii=False) + "\n")
    else:
        sys.stdout.write(format_plan(plan))
    for error in plan.errors:
        sys.stderr.write(f"kalab: error: {error}\n")
    return 0 if plan.ok else 1


def format_plan(plan: CidrPlan) -> str:
    """The aligned network/size/first/last table (when the CIDR parsed), then one line per warning."""
    rows = [("network", plan.network), ("size", plan.size), ("first", plan.first), ("last", plan.last)]
    lines = [f"{name:<8} {value}" for name, value in rows if plan.network is not None]
    lines += [f"warning: {w}" for w in plan.warnings]
    return "".join(line + "\n" for line in lines)


def run_sizes(args: argparse.Namespace) -> int:
    rows = size_rows()
    if args.json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return 0
    sys.stdout.write(f"{'prefix':<7} {'addresses':>9} {'usable':>6}\n")
    for row in rows:
        sys.stdout.write(f"{'/' + str(row['prefix']):<7} {row['addresses']:>9} {row['usable']:>6}\n")
    return 0
