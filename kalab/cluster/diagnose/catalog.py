"""The troubleshooting catalog: the failures users of the keepalived operator really hit, by stable id.

Pure data. Each entry says what the user sees, the cause, and the fix as a command (placeholders in <angle brackets>);
`kalab doctor` reports one finding per id, and the lab's `kalab lab break ID` reproduces the ones it can.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from kalab.model.operator import GROUP_ANNOTATION, SPREADVIPS_ANNOTATION

Severity = Literal["fail", "warn"]
Scope = Literal["cluster", "group", "service"]


@dataclass(frozen=True)
class Fault:
    """One catalog entry: what a user sees, why, and the command that fixes it."""

    id: str
    sees: str
    cause: str
    fix: str
    severity: Severity = "fail"  # what the doctor reports when it finds it
    scope: Scope = "cluster"  # what one finding is about: the cluster, a KeepalivedGroup, or a service


CATALOG: Final[tuple[Fault, ...]] = (
    Fault(
        "operator-not-ready",
        "no KeepalivedGroup kind, or the operator's CSV is not Succeeded (e.g. UnsupportedOperatorGroup)",
        "the OLM install is incomplete, or its OperatorGroup targets namespaces the CSV does not support",
        "oc get csv,operatorgroup,subscription -n keepalived-operator  # then redo notebook 01's install",
    ),
    Fault(
        "no-loadbalancer-nodes",
        "the group's DaemonSet wants 0 pods",
        "the KeepalivedGroup's nodeSelector matches no node (the node labels are missing)",
        "oc label node <node> node-role.kubernetes.io/loadbalancer=",
        scope="group",
    ),
    Fault(
        "scc-missing",
        "DaemonSet current 0, FailedCreate: unable to validate against any security context constraint",
        "the privileged SCC is not granted to the `default` service account of the group's namespace",
        "oc adm policy add-scc-to-user privileged -z default -n <group-namespace>",
        scope="group",
    ),
    Fault(
        "image-pull",
        "keepalived pods in ErrImagePull / ImagePullBackOff",
        "the KeepalivedGroup's spec.image is wrong or its registry unreachable",
        "oc patch keepalivedgroup <group> -n <group-namespace> --type json "
        '-p \'[{"op":"remove","path":"/spec/image"}]\'',
        scope="group",
    ),
    Fault(
        "wrong-interface",
        "keepalived crash-loops or stays FAULT; its log says the interface doesn't exist",
        "spec.interface of the KeepalivedGroup is not an interface of the nodes",
        "oc patch keepalivedgroup <group> -n <group-namespace> --type merge "
        '-p \'{"spec":{"interface":"<the nodes\' interface>"}}\'  # or use interfaceFromIP',
        scope="group",
    ),
    Fault(
        "port-conflict",
        "a second group's keepalived pods stay Pending: didn't have free ports",
        "two KeepalivedGroups select the same node (each pod's exporter wants hostPort 9650)",
        "oc label node <node> <second group's nodeSelector label>-  # one group per node",
        scope="group",
    ),
    Fault(
        "autoassign-missing",
        "EXTERNAL-IP <pending>, no events",
        "network.config/cluster has no spec.externalIP.autoAssignCIDRs",
        "oc patch network.config/cluster --type merge "
        '-p \'{"spec":{"externalIP":{"autoAssignCIDRs":["<cidr>"],'
        '"policy":{"allowedCIDRs":["<cidr>"]}}}}\'',
    ),
    Fault(
        "cidr-exhausted",
        "EXTERNAL-IP <pending>, event IngressIPRangeFull",
        "every address of the auto-assign block is held",
        "oc delete svc <unused service> -n <namespace>  # or widen autoAssignCIDRs",
    ),
    Fault(
        "externalip-not-allowed",
        "create refused: spec.externalIPs[0]: Forbidden: externalIP is not allowed",
        "the address is outside spec.externalIP.policy.allowedCIDRs (a policy without allowedCIDRs refuses all)",
        "oc patch network.config/cluster --type merge "
        '-p \'{"spec":{"externalIP":{"policy":{"allowedCIDRs":["<cidr>"]}}}}\'',
    ),
    Fault(
        "group-missing",
        "the VIP never appears on a node",
        "the service's annotation names a KeepalivedGroup that does not exist",
        f"oc annotate svc <service> -n <namespace> --overwrite {GROUP_ANNOTATION}=<group-namespace>/<group>",
        scope="service",
    ),
    Fault(
        "annotation-malformed",
        "the operator ignores the service (or logs an error about it)",
        "the annotation's value is not <namespace>/<name>",
        f"oc annotate svc <service> -n <namespace> --overwrite {GROUP_ANNOTATION}=<group-namespace>/<group>",
        scope="service",
    ),
    Fault(
        "router-ids-exhausted",
        "group condition ReconcileError: cannot allocate more than 255 ids",
        "too many services (or VIPs with spreadvips) in one KeepalivedGroup, or blacklistRouterIDs leaves too few",
        "oc apply -f <a second KeepalivedGroup>  # and move services to it; or shrink spec.blacklistRouterIDs",
        scope="group",
    ),
    Fault(
        "vrrp-blocked",
        "the VIP on two nodes, both exporters MASTER, advert_rcvd flat",
        "VRRP (IP protocol 112, multicast 224.0.0.18) does not get between the nodes (firewall, multicast filter)",
        "iptables -I INPUT -p vrrp -j ACCEPT  # on each node; or: oc patch keepalivedgroup <group> "
        '-n <group-namespace> --type merge -p \'{"spec":{"unicastEnabled":true}}\'',
        scope="service",
    ),
    Fault(
        "vrid-collision",
        "flapping; keepalived counters addr_list_err / bogus VRRP packets rising",
        "another VRRP speaker on the segment uses the same router ID (another group, the cluster's own keepalived)",
        "oc patch keepalivedgroup <group> -n <group-namespace> --type merge "
        '-p \'{"spec":{"blacklistRouterIDs":[<the other speaker\'s router ID>]}}\'',
        scope="service",
    ),
    Fault(
        "node-down",
        "the VIP moved, but some requests keep failing",
        "a loadbalancer node is unreachable or NotReady while endpoints on it remain",
        "oc get nodes; oc adm drain <node> --ignore-daemonsets --delete-emptydir-data",
        scope="group",
    ),
    Fault(
        "vip-nowhere",
        "curl to the VIP times out; no node holds it",
        "every keepalived instance of the service is down, FAULT or BACKUP",
        "oc logs -n <group-namespace> <keepalived pod> -c keepalived  # then bring the nodes' interface up "
        "(ip link set <interface> up) or restart the pods",
        scope="service",
    ),
    Fault(
        "vip-not-on-master",
        "an exporter says MASTER, but `ip addr` on that node lacks the VIP",
        "keepalived's state and the kernel disagree (an address removed by hand or by another tool)",
        "oc delete pod -n <group-namespace> <keepalived pod on that node>",
        scope="service",
    ),
    Fault(
        "vips-concentrated",
        "every VIP of the group on one node",
        "all instances have equal priorities, so one node wins every election",
        f"oc annotate svc <service> -n <namespace> {SPREADVIPS_ANNOTATION}=true",
        severity="warn",
        scope="group",
    ),
    Fault(
        "cidr-overlaps-cluster",
        "some clients cannot reach the VIP",
        "the externalIP block overlaps the cluster (pod) or service network",
        "oc patch network.config/cluster --type merge "
        '-p \'{"spec":{"externalIP":{"autoAssignCIDRs":["<a block outside both networks>"]}}}\'',
        severity="warn",
    ),
)

FAULTS: Final[dict[str, Fault]] = {fault.id: fault for fault in CATALOG}
IDS: Final[tuple[str, ...]] = tuple(FAULTS)
