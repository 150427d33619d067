"""`kalab render olm|keepalivedgroup|scc-grant|network-patch|demo`: print what each runbook step applies."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from kalab.cli.output import emit
from kalab.model import manifests
from kalab.model.cidr import host_bits_warning
from kalab.model.errors import KalabError

if TYPE_CHECKING:
    SubParsers = argparse._SubParsersAction[argparse.ArgumentParser]


def register(what: SubParsers) -> None:
    for add in (_add_olm, _add_keepalivedgroup, _add_scc_grant, _add_network_patch, _add_demo):
        parser = add(what)
        parser.add_argument("--json", action="store_true", help="print JSON instead of YAML")


# --- option parsing: one sentence naming the option when a value does not fit --------------------------------


def parse_pairs(values: Sequence[str], option: str, example: str) -> dict[str, str]:
    """KEY=VALUE strings (from a repeatable option) as a dict; a later KEY wins."""
    pairs: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise KalabError(f'{option} takes KEY=VALUE, e.g. {example}; "{item}" is not of that form.')
        pairs[key] = value
    return pairs


def parse_router_ids(values: Sequence[str]) -> list[int]:
    """Comma-separated router IDs (the option may be repeated): "1,2" → [1, 2]."""
    ids: list[int] = []
    for item in (part.strip() for value in values for part in value.split(",")):
        if not item:
            continue
        if not item.isdigit():
            raise KalabError(
                f'--blacklist-router-ids takes whole numbers separated by commas, e.g. 1,2; "{item}" is not one.'
            )
        ids.append(int(item))
    return ids


def parse_nodes(value: str) -> list[str]:
    """Comma-separated node names: "master-0,master-2" → ["master-0", "master-2"]."""
    nodes = [part.strip() for part in value.split(",")]
    if not any(nodes) or not all(nodes):
        raise KalabError(f'--nodes takes node names separated by commas, e.g. master-0,master-2; got "{value}".')
    return nodes


# --- sub-commands ----------------------------------------------------------------------------------------------


def _add_olm(what: SubParsers) -> argparse.ArgumentParser:
    parser = what.add_parser(
        "olm",
        help="Namespace, OperatorGroup and Subscription that install the operator",
        description="The objects that make OLM install the keepalived operator for all namespaces.",
    )
    parser.add_argument("--namespace", default="keepalived-operator", help="default: %(default)s")
    parser.add_argument("--channel", default="alpha", help="default: %(default)s")
    parser.add_argument("--source", default="community-operators", help="catalog source; default: %(default)s")
    parser.add_argument("--source-namespace", default="openshift-marketplace", help="default: %(default)s")
    parser.add_argument("--package", default="keepalived-operator", help="default: %(default)s")
    parser.set_defaults(handler=_run_olm)
    return parser


def _run_olm(args: argparse.Namespace) -> int:
    objects = manifests.olm_install(args.namespace, args.channel, args.source, args.source_namespace, args.package)
    emit(objects, args.json)
    return 0


def _add_keepalivedgroup(what: SubParsers) -> argparse.ArgumentParser:
    parser = what.add_parser(
        "keepalivedgroup",
        help="a KeepalivedGroup (which nodes run keepalived, on which interface)",
        description="A KeepalivedGroup custom resource; give --interface or --interface-from-ip.",
    )
    parser.add_argument("--name", default="keepalivedgroup-workers", help="default: %(default)s")
    parser.add_argument("--namespace", default="keepalived-operator", help="default: %(default)s")
    parser.add_argument("--interface", help="the NIC that carries the VIPs, e.g. ens3")
    parser.add_argument("--interface-from-ip", metavar="IP", help="find the NIC per node: the one routing to IP")
    selector = parser.add_mutually_exclusive_group()
    selector.add_argument(
        "--node-selector",
        action="append",
        metavar="KEY=VALUE",
        help="node label to match (repeatable; default node-role.kubernetes.io/loadbalancer=)",
    )
    selector.add_argument("--all-nodes", action="store_true", help="no node selector: run on every node")
    parser.add_argument("--image", default=manifests.DEFAULT_IMAGE, help="keepalived image; default: %(default)s")
    parser.add_argument(
        "--blacklist-router-ids", action="append", default=[], metavar="IDS", help="router IDs never to use, e.g. 1,2"
    )
    parser.add_argument("--unicast", action="store_true", help="send VRRP to the peers' host IPs, not multicast")
    parser.add_argument("--password-secret", metavar="SECRET", help="Secret holding the VRRP password")
    parser.add_argument("--password-key", default="password", help="key in that Secret; default: %(default)s")
    parser.add_argument(
        "--verbatim", action="append", default=[], metavar="KEY=VALUE", help="a global_defs line (repeatable)"
    )
    parser.add_argument("--priority-class", help="PriorityClass of the keepalived pods")
    parser.add_argument(
        "--pod-annotation", action="append", default=[], metavar="KEY=VALUE", help="keepalived pod annotation"
    )
    parser.set_defaults(handler=_run_keepalivedgroup)
    return parser


def _run_keepalivedgroup(args: argparse.Namespace) -> int:
    node_selector: dict[str, str] | None = None
    if args.all_nodes:
        node_selector = {}
    elif args.node_selector:
        node_selector = parse_pairs(args.node_selector, "--node-selector", "node-role.kubernetes.io/loadbalancer=")
    group = manifests.keepalived_group(
        args.name,
        args.namespace,
        interface=args.interface,
        interface_from_ip=args.interface_from_ip,
        node_selector=node_selector,
        image=args.image,
        blacklist_router_ids=parse_router_ids(args.blacklist_router_ids),
        unicast=args.unicast,
        password_secret=args.password_secret,
        password_key=args.password_key,
        verbatim=parse_pairs(args.verbatim, "--verbatim", "vrrp_garp_master_delay=1"),
        priority_class=args.priority_class,
        pod_annotations=parse_pairs(args.pod_annotation, "--pod-annotation", "example.com/team=network"),
    )
    emit(group, args.json)
    return 0


def _add_scc_grant(what: SubParsers) -> argparse.ArgumentParser:
    parser = what.add_parser(
        "scc-grant",
        help="let the keepalived pods run privileged (SCC users patch or RoleBinding)",
        description="What `oc adm policy add-scc-to-user privileged -z default -n NS` does. --form users prints "
        "a JSON patch for `oc patch scc privileged --type=json -p ...` (older 4.x); --form rbac prints a "
        "RoleBinding to the system:openshift:scc:privileged ClusterRole (newer 4.x).",
    )
    parser.add_argument("--namespace", default="keepalived-operator", help="default: %(default)s")
    parser.add_argument("--service-account", default="default", help="default: %(default)s")
    parser.add_argument("--scc", default="privileged", help="default: %(default)s")
    parser.add_argument("--form", default="users", help="users or rbac; default: %(default)s")
    parser.set_defaults(handler=_run_scc_grant)
    return parser


def _run_scc_grant(args: argparse.Namespace) -> int:
    grant = manifests.scc_grant(args.namespace, args.service_account, args.scc, args.form)
    # A JSON patch is one document holding a list, not a stream of documents.
    emit(grant if args.json or isinstance(grant, dict) else [grant], args.json)
    return 0


def _add_network_patch(what: SubParsers) -> argparse.ArgumentParser:
    parser = what.add_parser(
        "network-patch",
        help="the merge patch that sets the externalIP allowed and auto-assign CIDRs",
        description="The JSON merge patch for `oc patch network cluster --type=merge -p ...`; CIDRs are kept "
        "as written. With --json the output is byte-identical to the seed's envsubst | yq eval -j pipeline.",
    )
    parser.add_argument("--allowed", required=True, metavar="CIDR", help="policy.allowedCIDRs entry")
    parser.add_argument("--auto-assign", required=True, metavar="CIDR", help="autoAssignCIDRs entry")
    parser.set_defaults(handler=_run_network_patch)
    return parser


def _run_network_patch(args: argparse.Namespace) -> int:
    patch = manifests.network_patch(args.allowed, args.auto_assign)
    for cidr in dict.fromkeys([args.allowed, args.auto_assign]):
        warning = host_bits_warning(cidr)
        if warning:
            sys.stderr.write(f"kalab: warning: {warning}\n")
    if args.json:
        sys.stdout.write(manifests.network_patch_json(args.allowed, args.auto_assign))
    else:
        emit(patch, False)
    return 0


def _add_demo(what: SubParsers) -> argparse.ArgumentParser:
    parser = what.add_parser(
        "demo",
        help="the seed's demo: php pods pinned to nodes and an annotated LoadBalancer service",
        description="Pods test-0, test-1, … (one per node, label env=test) and the LoadBalancer service that "
        "the KeepalivedGroup serves.",
    )
    parser.add_argument("--namespace", default="demo", help="default: %(default)s")
    parser.add_argument("--nodes", default="master-0,master-2", help="comma-separated; default: %(default)s")
    parser.add_argument("--image", default=manifests.DEMO_IMAGE, help="default: %(default)s")
    parser.add_argument(
        "--group", default="keepalived-operator/keepalivedgroup-workers", help="NS/NAME; default: %(default)s"
    )
    parser.add_argument("--service", default="demo", help="service name; default: %(default)s")
    parser.set_defaults(handler=_run_demo)
    return parser


def _run_demo(args: argparse.Namespace) -> int:
    objects = manifests.demo(args.namespace, parse_nodes(args.nodes), args.image, args.group, args.service)
    emit(objects, args.json)
    return 0
