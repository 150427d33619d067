"""The doctor: every catalog check (catalog.py) on the cluster, each KeepalivedGroup, each annotated service.

Each check reuses the diagnoses' findings (external_ip, keepalived_pods, vip) and becomes one `Verdict` per catalog
id and subject: ok, warn or fail, a one-line summary, the evidence seen and the fix as a command. Checks run in
order, each bounded by a timeout; a check whose cause lies upstream (no pods because no node is labelled) says so
as a warn instead of failing twice, and a check that cannot run says why, also as a warn. It reads only what an
administrator with `oc` can: objects, events, pod logs, exec into the hostNetwork keepalived pods, the exporters'
metrics through the pod proxy.

It stays one module (some 600 lines) because it is one thing: a Doctor whose checks share the reads it makes once
and the verdicts upstream checks gave; the findings themselves live in the diagnosis modules beside it.
"""

from __future__ import annotations

import ipaddress
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

import pandas as pd
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from kalab.cluster import exporter, keepalived, network, nodes
from kalab.cluster._common import Deadline, api_message, as_dict
from kalab.cluster.connect import Cluster
from kalab.cluster.diagnose._reads import _as_dict, _joined, _networks, _policy_nets, _read_group, _read_service
from kalab.cluster.diagnose.catalog import CATALOG, FAULTS
from kalab.cluster.diagnose.external_ip import (
    _holders,
    _service_warnings,
    auto_block,
    block_finding,
    policy_refusal,
    usage_finding,
)
from kalab.cluster.diagnose.findings import Finding
from kalab.cluster.diagnose.keepalived_pods import (
    _operator_findings,
    _ready,
    _scc_finding,
    _selector_finding,
    failed_create_finding,
    matching_nodes,
)
from kalab.cluster.diagnose.vip import interface_finding, placement_findings, router_id_finding
from kalab.cluster.olm import OLM_GROUP
from kalab.model import objects, operator
from kalab.model.errors import KalabError

VerdictStatus = Literal["ok", "warn", "fail"]
CHECK_TIMEOUT = 8.0  # seconds one check may take before it is reported as not finished
COLLISION_LOOK = 2.0  # seconds between the two looks at the exporters' error counters
SETTLE = 5.0  # seconds an election in progress (no MASTER yet) is looked at again before it counts
_REF = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?/[a-z0-9]([-.a-z0-9]*[a-z0-9])?$")
_INTERFACE_LOG = ("doesn't exist", "Non-existent interface")
_PULL_REASONS = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName")


@dataclass(frozen=True)
class Verdict:
    """One catalog id checked on one subject (the cluster, a group <ns>/<name>, or a service <ns>/<name>)."""

    id: str
    status: VerdictStatus
    summary: str
    evidence: str
    fix: str = ""
    subject: str = "cluster"

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def failing(verdicts: Iterable[Verdict], status: VerdictStatus = "fail") -> list[Verdict]:
    """The verdicts with `status` (fail by default)."""
    return [v for v in verdicts if v.status == status]


def _fix(fault_id: str, **values: str) -> str:
    text = FAULTS[fault_id].fix
    for key, value in values.items():
        text = text.replace(f"<{key.replace('_', '-')}>", value)
    return text


def _from_findings(fault_id: str, subject: str, findings: Sequence[Finding], **fix: str) -> Verdict:
    """A verdict from diagnosis findings: the catalog's severity when any is a problem, else ok."""
    bad = [f for f in findings if not f.ok]
    evidence = "; ".join(f"{f.check}: {f.evidence}" for f in (bad or findings))
    if not bad:
        return Verdict(fault_id, "ok", findings[-1].evidence if findings else "nothing to check", evidence, "", subject)
    summary = f"{FAULTS[fault_id].cause}: {bad[0].evidence}"
    return Verdict(fault_id, FAULTS[fault_id].severity, summary, evidence, _fix(fault_id, **fix), subject)


def _ok(fault_id: str, subject: str, evidence: str) -> Verdict:
    return Verdict(fault_id, "ok", evidence, evidence, "", subject)


def _bad(fault_id: str, subject: str, evidence: str, **fix: str) -> Verdict:
    fault = FAULTS[fault_id]
    return Verdict(fault_id, fault.severity, f"{fault.cause}: {evidence}", evidence, _fix(fault_id, **fix), subject)


@dataclass
class _Group:
    """What the group checks read once: the group, its nodes, pods (raw and as a frame), VRRP states, addresses."""

    namespace: str
    name: str
    obj: dict[str, Any] | None = None
    matching: list[str] = field(default_factory=list)
    raw_pods: list[dict[str, Any]] = field(default_factory=list)
    pods: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=keepalived.POD_COLUMNS))
    not_ready: list[str] = field(default_factory=list)  # nodes of the group that are not Ready

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def spec(self) -> dict[str, Any]:
        return dict(objects.spec(self.obj))


class Doctor:
    """One run of every check; `run()` returns the verdicts in the order the checks ran: the cluster's, the services'
    group references, each group's, each service's VIP, and last where each group's VIPs are."""

    def __init__(
        self, cluster: Cluster, namespace: str | None = None, service: str | None = None, timeout: float = CHECK_TIMEOUT
    ) -> None:
        self.cluster, self.namespace, self.service, self.timeout = cluster, namespace, service, timeout
        self.verdicts: list[Verdict] = []
        self._external_ip: dict[str, Any] | None = None
        self._services: list[dict[str, Any]] = []
        self._groups: dict[str, _Group] = {}
        # A group's VRRP states and node addresses, read once and shared by its services' checks.
        self._states: dict[str, pd.DataFrame] = {}
        self._addresses: dict[str, dict[str, pd.DataFrame]] = {}
        self._errors: dict[str, dict[tuple[str, str], tuple[float, float]]] = {}

    # -- running ---------------------------------------------------------------------------------------------

    def _failed(self, fault_id: str, subject: str | None = None) -> Verdict | None:
        return next(
            (v for v in self.verdicts if v.id == fault_id and v.status == "fail" and subject in (None, v.subject)),
            None,
        )

    def _check(
        self, fault_id: str, subject: str, run: Callable[[], Verdict], after: Sequence[tuple[str, str | None]] = ()
    ) -> None:
        """Run one check within the timeout, unless a check it depends on (id, subject) failed already."""
        for upstream, where in after:
            cause = self._failed(upstream, where)
            if cause is not None:
                seen = f"not checked: {upstream} fails for {cause.subject} first"
                self.verdicts.append(Verdict(fault_id, "warn", seen, cause.summary, "", subject))
                return
        self.verdicts.append(_bounded(fault_id, subject, run, self.timeout))

    def run(self) -> list[Verdict]:
        self._read_services()
        self._check("operator-not-ready", "cluster", self._operator)
        self._check("autoassign-missing", "cluster", self._autoassign)
        self._check("cidr-exhausted", "cluster", self._exhausted, [("autoassign-missing", "cluster")])
        self._check("externalip-not-allowed", "cluster", self._policy)
        self._check("cidr-overlaps-cluster", "cluster", self._overlaps, [("autoassign-missing", "cluster")])
        for svc in self._services:
            self._service_refs(svc)
        if self.service is None and self._failed("operator-not-ready") is None:
            self._all_groups()
        for ref in sorted(self._groups):
            self._group_checks(self._groups[ref])
        for svc in self._services:
            self._vip_checks(svc)
        for ref in sorted(self._groups):
            group = self._groups[ref]
            after = [(f, ref) for f in _GROUP_FAULTS] + [("vrrp-blocked", None), ("vip-nowhere", None)]
            self._check("vips-concentrated", ref, lambda g=group: self._concentrated(g), after)  # type: ignore[misc]
        return self.verdicts

    # -- reads -----------------------------------------------------------------------------------------------

    def _read_services(self) -> None:
        if self.service:
            namespace = self.namespace or "demo"
            self._services = [_read_service(self.cluster, namespace, self.service)]
            return
        try:
            items = self.cluster.core.list_service_for_all_namespaces(_request_timeout=self.timeout).items
        except (ApiException, HTTPError, OSError) as err:
            # The service checks cannot run; say so for each, and let the cluster and group checks run all the same.
            why = api_message(err).rstrip(".") if isinstance(err, ApiException) else type(err).__name__
            for fault in CATALOG:
                if fault.scope == "service":
                    seen = f"could not check: listing services failed ({why})"
                    self.verdicts.append(Verdict(fault.id, "warn", seen, seen, "", "services"))
            return
        found = [_as_dict(self.cluster, item) for item in items]
        self._services = sorted(
            (
                s
                for s in found
                if objects.spec(s).get("type") == "LoadBalancer"
                and operator.GROUP_ANNOTATION in objects.annotations_of(s)
                and (self.namespace is None or objects.meta(s).get("namespace") == self.namespace)
            ),
            key=operator.namespaced_name,
        )

    def _all_groups(self) -> None:
        """Every KeepalivedGroup, also those no service names yet (a second group can still take a node's ports)."""
        try:
            found = self.cluster.custom.list_cluster_custom_object(
                keepalived.GROUP, keepalived.VERSION, keepalived.PLURAL, _request_timeout=self.timeout
            )
        except (ApiException, HTTPError, OSError):
            return  # the groups the services name are checked all the same
        for obj in as_dict(found).get("items") or []:
            meta = objects.meta(obj)
            ref = f"{meta.get('namespace')}/{meta.get('name')}"
            self._groups.setdefault(ref, _Group(str(meta.get("namespace")), str(meta.get("name")), dict(obj)))

    def _external(self) -> dict[str, Any] | None:
        if self._external_ip is None:
            self._external_ip = network.read_external_ip(self.cluster) or {}
        return self._external_ip

    # -- cluster-wide ----------------------------------------------------------------------------------------

    def _operator(self) -> Verdict:
        namespace = keepalived.DEFAULT_NAMESPACE
        verdict = _from_findings("operator-not-ready", "cluster", _operator_findings(self.cluster, namespace))
        if verdict.status == "fail" and "UnsupportedOperatorGroup" in verdict.evidence:
            # Redoing the install would keep the narrowed group: the fix is the group watching all namespaces.
            return replace(verdict, fix=_widen_operator_group(self.cluster, namespace))
        return verdict

    def _autoassign(self) -> Verdict:
        return _from_findings("autoassign-missing", "cluster", [block_finding(self._external())])

    def _exhausted(self) -> Verdict:
        block = auto_block(self._external())
        assert block is not None  # autoassign-missing comes first
        waiting = [s for s in self._services if not operator.service_vips(s)]
        found = usage_finding(block, _holders(self.cluster), bool(waiting))
        if not found.ok:  # the events of the services left waiting say so in OpenShift's words
            events = [
                f"{operator.namespaced_name(s)}: {w}"
                for s in waiting
                for w in _service_warnings(self.cluster, *operator.namespaced_name(s).split("/", 1))
            ]
            found = replace(found, evidence=f"{found.evidence}; events: {_joined(events)}")
        return _from_findings("cidr-exhausted", "cluster", [found])

    def _policy(self) -> Verdict:
        """Requested externalIPs must pass spec.externalIP.policy: the services' own, and the block's addresses."""
        external = self._external()
        allowed = _policy_nets(external, "allowedCIDRs")
        refusals: list[str] = []
        for svc in self._services:
            spec, block = objects.spec(svc), auto_block(external)
            for ip in spec.get("externalIPs") or []:
                auto = spec.get("type") == "LoadBalancer" and block is not None and ipaddress.ip_address(ip) in block
                reason = None if auto else policy_refusal(str(ip), external)
                if reason:
                    refusals.append(f"{operator.namespaced_name(svc)}: {reason}")
        block = auto_block(external)
        if block is not None:
            reason = policy_refusal(str(next(block.hosts(), block.network_address)), external)
            if reason:
                refusals.append(f"requesting an address of {block} by hand is refused: {reason}")
        cidr = str(block) if block is not None else "<cidr>"
        if refusals:
            return _bad("externalip-not-allowed", "cluster", "; ".join(refusals), cidr=cidr)
        return _ok("externalip-not-allowed", "cluster", f"policy.allowedCIDRs {_joined(allowed)} admits the block")

    def _overlaps(self) -> Verdict:
        block = auto_block(self._external())
        assert block is not None
        status = objects.status(network.read_network(self.cluster))
        cluster_nets = [e.get("cidr") for e in status.get("clusterNetwork") or [] if isinstance(e, Mapping)]
        nets = _networks([*cluster_nets, *(status.get("serviceNetwork") or [])])
        clash = [str(n) for n in nets if n.version == block.version and n.overlaps(block)]
        if clash:
            return _bad("cidr-overlaps-cluster", "cluster", f"{block} overlaps {_joined(clash)}")
        return _ok("cidr-overlaps-cluster", "cluster", f"{block} overlaps neither {_joined(nets, 'network')}")

    # -- groups ----------------------------------------------------------------------------------------------

    def _service_refs(self, svc: dict[str, Any]) -> None:
        """annotation-malformed and group-missing for one service; registers the group it names."""
        where = operator.namespaced_name(svc)
        ns, name = where.split("/", 1)
        value = str(objects.annotations_of(svc).get(operator.GROUP_ANNOTATION, "")).strip()
        fix = {"service": name, "namespace": ns}

        def annotation() -> Verdict:
            if not value:
                return _bad("annotation-malformed", where, f"{where} has no {operator.GROUP_ANNOTATION} value", **fix)
            if not _REF.match(value):
                seen = f'{where} has {operator.GROUP_ANNOTATION}: "{value}", not <namespace>/<name>'
                return _bad("annotation-malformed", where, seen, **fix)
            return _ok("annotation-malformed", where, f"{operator.GROUP_ANNOTATION}: {value}")

        def group() -> Verdict:
            gns, gname = value.split("/", 1)
            obj = _read_group(self.cluster, gname, gns)
            if obj is None:
                seen = f"{where} names KeepalivedGroup {value}, which does not exist"
                return _bad("group-missing", where, seen, **fix)
            self._groups.setdefault(value, _Group(gns, gname, obj))
            return _ok("group-missing", where, f"KeepalivedGroup {value} exists")

        self._check("annotation-malformed", where, annotation)
        self._check("group-missing", where, group, [("annotation-malformed", where), ("operator-not-ready", "cluster")])

    def _group_checks(self, group: _Group) -> None:
        ref, after = group.ref, [("operator-not-ready", "cluster")]
        self._check("no-loadbalancer-nodes", ref, lambda: self._selector(group), after)
        self._check("scc-missing", ref, lambda: self._scc(group), [*after, ("no-loadbalancer-nodes", ref)])
        pod_after = [*after, ("no-loadbalancer-nodes", ref), ("scc-missing", ref)]
        self._check("image-pull", ref, lambda: self._image_pull(group), pod_after)
        self._check("wrong-interface", ref, lambda: self._interface(group), [*pod_after, ("image-pull", ref)])
        self._check("port-conflict", ref, lambda: self._ports(group), pod_after)
        self._check("router-ids-exhausted", ref, lambda: self._router_ids(group), after)
        self._check("node-down", ref, lambda: self._node_down(group), [*after, ("no-loadbalancer-nodes", ref)])

    def _node_down(self, group: _Group) -> Verdict:
        if group.not_ready:
            seen = f"loadbalancer node(s) {_joined(group.not_ready)} not Ready; endpoints there may still get traffic"
            return _bad("node-down", group.ref, seen)
        return _ok("node-down", group.ref, f"every node of the group is Ready ({_joined(group.matching, 'none')})")

    def _selector(self, group: _Group) -> Verdict:
        selector = {str(k): str(v) for k, v in (group.spec.get("nodeSelector") or {}).items()}
        table = nodes.nodes(self.cluster)
        group.matching = matching_nodes(table, selector)
        group.not_ready = sorted(str(n) for n in table[~table["ready"].astype(bool)]["name"] if n in group.matching)
        try:
            items = self.cluster.core.list_namespaced_pod(
                group.namespace, label_selector=f"{operator.POD_GROUP_LABEL}={group.name}"
            ).items
        except ApiException as err:
            raise KalabError(f"Listing the keepalived pods failed ({api_message(err).rstrip('.')})") from None
        group.raw_pods = [_as_dict(self.cluster, p) for p in items]
        group.pods = keepalived.keepalived_pods(self.cluster, group.namespace, group.name)
        return _from_findings("no-loadbalancer-nodes", group.ref, [_selector_finding(selector, group.matching)])

    def _scc(self, group: _Group) -> Verdict:
        findings = [_scc_finding(self.cluster, group.namespace)]
        short = len(group.pods) < len(group.matching)
        events = keepalived.daemonset_events(self.cluster, group.namespace)
        findings.append(failed_create_finding(events, group.name, short))
        return _from_findings("scc-missing", group.ref, findings, group_namespace=group.namespace)

    def _containers(self, group: _Group) -> Iterable[tuple[str, dict[str, Any], dict[str, Any]]]:
        """(pod, container status, its spec) for every container of the group's pods."""
        for pod in group.raw_pods:
            name = objects.name_of(pod)
            specs = {c.get("name"): c for c in objects.spec(pod).get("containers") or []}
            for status in objects.status(pod).get("containerStatuses") or []:
                yield name, status, specs.get(status.get("name")) or {}

    def _image_pull(self, group: _Group) -> Verdict:
        stuck = []
        for pod, status, spec in self._containers(group):
            waiting = (status.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in _PULL_REASONS:
                stuck.append(
                    f"{pod}/{status.get('name')} {waiting['reason']} ({spec.get('image') or status.get('image')})"
                )
        fix = {"group": group.name, "group_namespace": group.namespace}
        if stuck:
            return _bad("image-pull", group.ref, _joined(stuck), **fix)
        return _ok("image-pull", group.ref, f"every image of {len(group.raw_pods)} keepalived pod(s) pulled")

    def _interface(self, group: _Group) -> Verdict:
        """The keepalived container's own words (its log) first, then `ip addr` on the nodes it runs on."""
        fix = {"group": group.name, "group_namespace": group.namespace}
        for pod, status, _ in self._containers(group):
            if status.get("name") != "keepalived" or status.get("ready"):
                continue
            for previous in (False, True):
                try:
                    text = self.cluster.core.read_namespaced_pod_log(
                        pod, group.namespace, container="keepalived", tail_lines=40, previous=previous
                    )
                except ApiException:
                    continue
                lines = [ln for ln in str(text).splitlines() if any(m in ln for m in _INTERFACE_LOG)]
                if lines:
                    return _bad("wrong-interface", group.ref, f"{pod} keepalived log: {lines[0].strip()}", **fix)
        ready = sorted(_ready(group.pods)["node"])
        addresses = {node: nodes.node_interfaces(self.cluster, node, group.namespace) for node in ready}
        self._addresses[group.ref] = addresses
        if not ready:
            return _ok("wrong-interface", group.ref, "no keepalived container logs a missing interface")
        return _from_findings("wrong-interface", group.ref, [interface_finding(group.spec, addresses)], **fix)

    def _ports(self, group: _Group) -> Verdict:
        pending = []
        for pod in group.raw_pods:
            for cond in objects.status(pod).get("conditions") or []:
                message = str(cond.get("message") or "")
                if cond.get("type") == "PodScheduled" and cond.get("status") == "False" and "free ports" in message:
                    pending.append(f"{(pod.get('metadata') or {}).get('name')}: {message}")
        if pending:
            return _bad("port-conflict", group.ref, _joined(pending))
        return _ok("port-conflict", group.ref, "no keepalived pod waits for a free host port")

    def _router_ids(self, group: _Group) -> Verdict:
        conditions = objects.status(group.obj).get("conditions") or []
        bad = [
            f"{c.get('type')}: {c.get('message')}"
            for c in conditions
            if c.get("type") == "ReconcileError" and re.search(r"allocate|router ID", str(c.get("message") or ""))
        ]
        if bad:
            return _bad("router-ids-exhausted", group.ref, bad[0])
        held = len(objects.status(group.obj).get("routerIDs") or {})
        return _ok("router-ids-exhausted", group.ref, f"{held} of 255 router IDs in use")

    # -- where the VIPs are ----------------------------------------------------------------------------------

    def _vip_checks(self, svc: dict[str, Any]) -> None:
        where = operator.namespaced_name(svc)
        ref = str(objects.annotations_of(svc).get(operator.GROUP_ANNOTATION, "")).strip()
        # Without a ready operator the group is not read (group-missing is not checked), so neither are the VIPs.
        after: list[tuple[str, str | None]] = [("operator-not-ready", "cluster"), ("annotation-malformed", where)]
        after += [("group-missing", where), *((f, ref) for f in _GROUP_FAULTS)]
        if not operator.service_vips(svc):
            after += [("autoassign-missing", "cluster"), ("cidr-exhausted", "cluster")]
        placed: dict[str, list[Finding]] = {}

        def place() -> dict[str, list[Finding]]:
            if not placed:
                placed.update(self._placement(svc, self._groups[ref]))
            return placed

        group = self._groups.get(ref)
        if operator.service_vips(svc) and group is not None:
            self._check("vrid-collision", where, lambda: self._collision(svc, group), after)
        after.append(("vrid-collision", where))
        for fault_id in ("vip-nowhere", "vrrp-blocked", "vip-not-on-master"):
            self._check(fault_id, where, lambda f=fault_id: self._placed(f, where, place()), after)  # type: ignore[misc]

    def _collision(self, svc: dict[str, Any], group: _Group) -> Verdict:
        """Adverts for the service's router ID that carry other addresses: keepalived counts them in addr_list_err.
        A counter keeps what happened since keepalived started, so it counts only when it rises between two looks."""
        where, keys = operator.namespaced_name(svc), operator.instance_keys(svc)
        if group.ref not in self._errors:
            first = _addr_list_errors(self.cluster, group)
            time.sleep(COLLISION_LOOK)  # two adverts at the operator's advert_int of 1 s
            second = _addr_list_errors(self.cluster, group)
            self._errors[group.ref] = {k: (first.get(k, v), v) for k, v in second.items() if v > first.get(k, v)}
        rising = {k: v for k, v in self._errors[group.ref].items() if k[1] in keys}
        vrids = objects.status(group.obj).get("routerIDs") or {}
        if rising:
            seen = "; ".join(f"addr_list_err of {n} on {p} rose {a:g} → {b:g}" for (p, n), (a, b) in rising.items())
            seen += f" (router ID {_joined(str(vrids.get(k)) for k in keys)} is used by another VRRP speaker)"
            return _bad("vrid-collision", where, seen, group=group.name, group_namespace=group.namespace)
        return _ok(
            "vrid-collision",
            where,
            f"no adverts with other addresses for router ID {_joined(vrids.get(k) for k in keys)}",
        )

    def _placed(self, fault_id: str, where: str, placed: Mapping[str, list[Finding]]) -> Verdict:
        ns, name = where.split("/", 1)
        return _from_findings(fault_id, where, placed[fault_id], service=name, namespace=ns)

    def _placement(self, svc: dict[str, Any], group: _Group) -> dict[str, list[Finding]]:
        """The VIP checks for one service, looked at again for a few seconds while an election may be running."""
        deadline = Deadline(SETTLE)
        while True:
            found = self._placement_once(svc, group)
            if all(f.ok for fs in found.values() for f in fs) or deadline.expired():
                return found
            time.sleep(min(0.5, deadline.left()))
            self._states.pop(group.ref, None)
            self._addresses.pop(group.ref, None)

    def _placement_once(self, svc: dict[str, Any], group: _Group) -> dict[str, list[Finding]]:
        where, vips = operator.namespaced_name(svc), operator.instance_vips(svc)
        if not vips:
            seen = f"{where} has no EXTERNAL-IP to carry"
            return {
                "vip-nowhere": [Finding("VIP nowhere", "EXTERNAL-IP assigned", "problem", seen, "")],
                "vrrp-blocked": [Finding("VIP on two nodes", "EXTERNAL-IP assigned", "ok", "no VIP to place")],
                "vip-not-on-master": [Finding("VIP nowhere", "EXTERNAL-IP assigned", "ok", "no VIP to place")],
            }
        keys = operator.instance_keys(svc)
        routed = router_id_finding(keys, objects.status(group.obj).get("routerIDs") or {}, group.ref)
        if group.ref not in self._addresses:
            ready = sorted(_ready(keepalived.keepalived_pods(self.cluster, group.namespace, group.name))["node"])
            self._addresses[group.ref] = {n: nodes.node_interfaces(self.cluster, n, group.namespace) for n in ready}
        if group.ref not in self._states:
            try:
                self._states[group.ref] = exporter.vrrp_states(self.cluster, group.namespace, group.name)
            except KalabError:
                self._states[group.ref] = pd.DataFrame(columns=exporter.STATE_COLUMNS)
        addresses, states = self._addresses[group.ref], self._states[group.ref]
        master_exists, somewhere, once, on_one = placement_findings(keys, vips, states, addresses)
        mine = states[states["instance"].isin(keys)]
        masters = sorted(set(mine[mine["state"] == "MASTER"]["node"]))
        lacking = [
            f"{vip} not on {node}"
            for node in masters
            for vip in vips
            if node in addresses and vip not in set(addresses[node]["address"].dropna()) and len(keys) == 1
        ]
        check = "the MASTER holds the VIP"
        if lacking:
            on_master = Finding(
                "VIP nowhere", check, "problem", f"MASTER on {_joined(masters)}, but {_joined(lacking)}"
            )
        else:
            on_master = Finding(
                "VIP nowhere", check, "ok", f"MASTER on {_joined(masters, 'no node')} holds {_joined(vips)}"
            )
        return {
            "vip-nowhere": [routed, master_exists, somewhere],
            "vrrp-blocked": [once, on_one],
            "vip-not-on-master": [on_master],
        }

    def _concentrated(self, group: _Group) -> Verdict:
        """Are all the group's VIPs (of services not spreading theirs) MASTER on one node while others could help?"""
        states = self._states.get(group.ref)
        if states is None:
            states = exporter.vrrp_states(self.cluster, group.namespace, group.name)
        masters = states[states["state"] == "MASTER"]
        by_node = masters.groupby("node")["instance"].nunique().to_dict() if len(masters) else {}
        ready = sorted(_ready(group.pods)["node"]) if len(group.pods) else []
        total = int(masters["instance"].nunique()) if len(masters) else 0
        seen = ", ".join(f"{n}: {c}" for n, c in sorted(by_node.items())) or "no MASTER"
        if total >= 2 and len(by_node) == 1 and len(ready) >= 2:
            spread = [operator.namespaced_name(s) for s in self._services if not operator.spreads_vips(s)]
            ns, name = spread[0].split("/", 1) if spread else ("<namespace>", "<service>")
            evidence = f"all {total} VIP instances are MASTER on {next(iter(by_node))} (of {_joined(ready)})"
            return _bad("vips-concentrated", group.ref, evidence, service=name, namespace=ns)
        return _ok("vips-concentrated", group.ref, f"MASTER instances per node: {seen}")


_GROUP_FAULTS = ("no-loadbalancer-nodes", "scc-missing", "image-pull", "wrong-interface", "port-conflict")


def _widen_operator_group(cluster: Cluster, namespace: str) -> str:
    """The fix for a CSV that supports AllNamespaces only: its OperatorGroup without targetNamespaces."""
    found = as_dict(cluster.custom.list_namespaced_custom_object(OLM_GROUP, "v1", namespace, "operatorgroups"))
    names = [str(g["metadata"]["name"]) for g in found.get("items") or []]
    name = names[0] if len(names) == 1 else "<operatorgroup>"
    remove = '[{"op":"remove","path":"/spec/targetNamespaces"}]'
    return f"oc patch operatorgroup {name} -n {namespace} --type json -p '{remove}'"


def _addr_list_errors(cluster: Cluster, group: _Group) -> dict[tuple[str, str], float]:
    """(pod, instance) → keepalived_vrrp_addr_list_err, from every Running keepalived pod's exporter."""
    frame = exporter.scrape_all(cluster, group.namespace, group.name)
    if "name" not in frame.columns:
        return {}
    errors = frame[frame["metric"] == "keepalived_vrrp_addr_list_err"]
    return {(str(p), str(n)): float(v) for p, n, v in zip(errors["pod"], errors["name"], errors["value"], strict=True)}


def _bounded(fault_id: str, subject: str, run: Callable[[], Verdict], timeout: float) -> Verdict:
    """Run a check in a thread of its own for at most `timeout` s; a check that fails or hangs says why."""
    result: list[Verdict] = []
    error: list[str] = []

    def target() -> None:
        try:
            result.append(run())
        except KalabError as err:
            error.append(str(err).rstrip("."))
        except ApiException as err:
            error.append(f"the API answered {err.status} ({api_message(err).rstrip('.')})")
        except Exception as err:  # one broken check must not stop the others
            error.append(f"{type(err).__name__}: {err}")

    thread = threading.Thread(target=target, name=f"doctor-{fault_id}", daemon=True)
    thread.start()
    thread.join(timeout)
    if result:
        return result[0]
    why = error[0] if error else f"the check did not finish within {timeout:g} s"
    return Verdict(fault_id, "warn", f"could not check: {why}", why, "", subject)


def doctor(
    cluster: Cluster, namespace: str | None = None, service: str | None = None, timeout: float = CHECK_TIMEOUT
) -> list[Verdict]:
    """Every catalog check: cluster-wide, per KeepalivedGroup in use, per annotated LoadBalancer service (or the one
    given); each bounded by `timeout` seconds."""
    return Doctor(cluster, namespace, service, timeout).run()
