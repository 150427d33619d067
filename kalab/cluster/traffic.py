"""Where the demo VIP's traffic goes: which pod answered each request, the nat rules the VIP meets on the node
that holds it, and the keepalived pod that put it there.

Requests are sent by a client site (`kalab.cluster.sites.site_for`): from where the cluster's clients live, which
for the lab is its bastion namespace, never the host. Anything with a `where` sentence and a `probe` method that
returns the prober's frame (seq, t, latency_ms, ok, status, error, backend, lag_ms) will do.
"""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass
from typing import Any

import pandas as pd
from kubernetes.client.exceptions import ApiException

from kalab.cluster._common import as_dict, fail
from kalab.cluster.connect import Cluster
from kalab.cluster.demo import demo_pods
from kalab.cluster.keepalived import DEFAULT_GROUP, DEFAULT_NAMESPACE, keepalived_pods
from kalab.cluster.nodes import host_network_pod
from kalab.cluster.pods import exec_in_pod
from kalab.cluster.sites import Site
from kalab.cluster.trace import trace_vip
from kalab.model.errors import KalabError
from kalab.model.iptables import Hop, ListingRule, Trace, parse_listing_line

SERVICES_CHAIN = "KUBE-SERVICES"
DEMO_INSTANCE = "demo/demo"  # the VRRP instance the operator renders for service demo/demo
SPREAD_COLUMNS = ["pod", "node", "pod_ip", "requests", "share"]
PATH_COLUMNS = ["pod", "node", "endpoint", "probability", "matched_by", "path", "masquerade"]
RULE_COLUMNS = ["rule", "packets", "bytes", "target", "comment", "line"]
_PROBE_COLUMNS = ("t", "ok", "error", "backend")


# ---------------------------------------------------------------------------------------------- spread


@dataclass(frozen=True)
class Spread:
    """A probe of the VIP: every request (`timeline`, with the answering demo `pod`) and the count per pod."""

    url: str
    where: str
    timeline: pd.DataFrame
    per_pod: pd.DataFrame

    @property
    def requests(self) -> int:
        return len(self.timeline)

    @property
    def failed(self) -> int:
        return int((~self.timeline["ok"].astype(bool)).sum())

    def errors(self) -> dict[str, int]:
        """How the failed requests failed: error → count (e.g. {"timeout": 2})."""
        failed = self.timeline[~self.timeline["ok"].astype(bool)]
        counts = failed["error"].fillna("").astype(str).replace("", "unknown").value_counts()
        return {str(k): int(v) for k, v in counts.items()}

    def by_pod(self) -> pd.DataFrame:
        """The timeline with each answer's `backend` given as the pod's name, for plots that label by backend."""
        named = self.timeline["pod"].where(self.timeline["pod"].notna(), self.timeline["backend"])
        return self.timeline.assign(backend=named)

    def even_band(self, sigmas: float = 4.0) -> tuple[float, float]:
        """The share each pod gets when every connection picks a pod at random, ± `sigmas` standard deviations."""
        answered = int(self.per_pod["requests"].sum())
        return even_band(answered, int(self.per_pod["pod"].notna().sum()), sigmas)


def even_band(answered: int, pods: int, sigmas: float = 4.0) -> tuple[float, float]:
    """kube-proxy picks an endpoint per connection at random: the count is binomial(answered, 1/pods)."""
    if answered <= 0 or pods <= 0:
        return 0.0, 1.0
    p = 1.0 / pods
    spread = sigmas * math.sqrt(p * (1.0 - p) / answered)
    return max(0.0, p - spread), min(1.0, p + spread)


def spread_table(timeline: pd.DataFrame, pods: pd.DataFrame) -> pd.DataFrame:
    """Answered requests per demo pod (every pod listed, 0 when it got none): pod, node, pod_ip, requests, share.

    `share` is of the answered requests, so the shares add up to 1 whenever anything answered. An answer from an
    address that is no demo pod gets a row of its own with pod and node empty.
    """
    _require(timeline)
    answered = timeline[timeline["ok"].astype(bool) & timeline["backend"].notna()]
    counts = answered["backend"].astype(str).value_counts()
    rows = [
        {"pod": p.pod, "node": p.node, "pod_ip": p.pod_ip, "requests": int(counts.get(str(p.pod_ip), 0))}
        for p in pods.itertuples()
    ]
    known = {str(ip) for ip in pods["pod_ip"]}
    rows += [
        {"pod": None, "node": None, "pod_ip": str(ip), "requests": int(n)}
        for ip, n in counts.items()
        if str(ip) not in known
    ]
    frame = pd.DataFrame(rows, columns=SPREAD_COLUMNS[:-1])
    total = int(frame["requests"].sum())
    frame["share"] = frame["requests"] / total if total else 0.0
    return frame.sort_values(["pod", "pod_ip"], ignore_index=True, na_position="last")


def _require(timeline: pd.DataFrame) -> None:
    missing = [c for c in _PROBE_COLUMNS if c not in timeline.columns]
    if missing:
        raise KalabError(
            f"The probe frame lacks the column(s) {', '.join(missing)}; probe with a client site's probe()."
        )


def _check_ip(vip: str) -> str:
    try:
        return str(ipaddress.IPv4Address(vip.strip()))
    except ValueError:
        raise KalabError(f"{vip!r} is not an IPv4 address; give the service's EXTERNAL-IP, e.g. 172.21.6.50.") from None


def vip_url(vip: str, port: int = 80, path: str = "/") -> str:
    """http://VIP/ (the seed's `curl http://172.21.6.50/`), with :port when it is not 80."""
    host = _check_ip(vip) if port == 80 else f"{_check_ip(vip)}:{port}"
    return f"http://{host}{path if path.startswith('/') else '/' + path}"


def spread(
    cluster: Cluster,
    site: Site,
    vip: str,
    duration: float = 2.0,
    rate: float = 100.0,
    timeout: float = 1.0,
    namespace: str = "demo",
    port: int = 80,
) -> Spread:
    """Probe http://VIP/ from `site` for `duration` s at `rate` requests/s and count which demo pod answered."""
    url = vip_url(vip, port)
    pods = demo_pods(cluster, namespace)
    running = pods[pods["phase"] == "Running"]
    if running.empty:
        raise KalabError(f"No demo pod is Running in {namespace}; deploy the demo first (notebook 03).")
    timeline = site.probe(url, duration, rate, timeout)
    _require(timeline)
    if timeline.empty or not timeline["ok"].astype(bool).any():
        raise KalabError(
            f"None of the {len(timeline)} requests to {url} from {site.where.rstrip('.')} was answered; check "
            f"{vip} is the demo service's EXTERNAL-IP and a keepalived pod holds it (notebook 03)."
        )
    names = {str(ip): str(name) for ip, name in zip(running["pod_ip"], running["pod"], strict=True) if ip}
    answered_by = timeline["backend"].map(lambda ip: names.get(str(ip)) if isinstance(ip, str) else None)
    timeline = timeline.assign(pod=answered_by.astype("object"))
    return Spread(url, site.where, timeline, spread_table(timeline, running))


def path_table(found: Trace, pods: pd.DataFrame) -> pd.DataFrame:
    """One row per way the traced packet is DNATed: the pod behind the endpoint, its probability, the rule that
    sent the packet on to the service (`matched_by`, its comment) and the chains it went through."""
    by_ip = {str(p.pod_ip): (p.pod, p.node) for p in pods.itertuples()}
    rows = []
    for outcome in found.outcomes:
        if outcome.dnat is None:
            continue
        pod, node = by_ip.get(outcome.dnat.rsplit(":", 1)[0], (None, None))
        rows.append(
            {
                "pod": pod,
                "node": node,
                "endpoint": outcome.dnat,
                "probability": outcome.probability,
                "matched_by": _entry_rule(outcome.hops, found.start_chain),
                "path": " → ".join(outcome.path),
                "masquerade": outcome.masquerade,
            }
        )
    return pd.DataFrame(rows, columns=PATH_COLUMNS)


def _entry_rule(hops: tuple[Hop, ...], start_chain: str) -> str | None:
    """The rule that sent the packet on to the service: its last hop in KUBE-SERVICES, else in the start chain."""
    for chain in (SERVICES_CHAIN, start_chain):
        mine = [h for h in hops if h.chain == chain]
        if mine:
            return mine[-1].comment or mine[-1].rule
    return None


def vip_paths(
    cluster: Cluster,
    node: str,
    vip: str,
    port: int = 80,
    start: str | None = None,
    namespace: str = "demo",
) -> pd.DataFrame:
    """Trace a client's packet to VIP:port through `node`'s nat table to the demo pods (see `path_table`)."""
    found = trace_vip(cluster, node, _check_ip(vip), port, start=start)
    if not found.matched:
        raise KalabError(
            f"Nothing in {node}'s nat table DNATs {vip}:{port} (from {found.start_chain}); check {vip} is the "
            "service's EXTERNAL-IP and that kube-proxy has programmed it."
        )
    return path_table(found, demo_pods(cluster, namespace))


def listing_rows(text: str, vip: str, port: int | None = None) -> pd.DataFrame:
    """The rules of an `iptables -t nat -L CHAIN -n -v` listing whose destination is `vip` (and dpt:`port`).

    `rule` is the rule's position in the chain (as `--line-numbers` would print it); `line` is the rule's line as
    the listing printed it, e.g. the seed's `0 0 KUBE-FW-… tcp -- * * 0.0.0.0/0 172.21.6.50 /* … */ tcp dpt:80`.
    """
    rows = []
    position = 0
    for raw in text.splitlines():
        if not raw.strip() or raw.startswith("Chain ") or raw.split()[0] in ("pkts", "num"):
            continue
        position += 1
        rule: ListingRule = parse_listing_line(raw)
        if rule.destination.split("/")[0] != vip or (port is not None and f"dpt:{port}" not in rule.extra.split()):
            continue
        rows.append(
            {
                "rule": rule.num or position,
                "packets": rule.packets,
                "bytes": rule.bytes,
                "target": rule.target,
                "comment": rule.comment,
                "line": raw.rstrip(),
            }
        )
    return pd.DataFrame(rows, columns=RULE_COLUMNS)


def vip_rules(
    cluster: Cluster,
    node: str,
    vip: str,
    port: int = 80,
    chain: str = SERVICES_CHAIN,
    namespace: str = DEFAULT_NAMESPACE,
) -> pd.DataFrame:
    """`iptables -t nat -L KUBE-SERVICES -n -v -x` on `node` (in its keepalived pod), only the rules for VIP:port,
    in order, with their packet and byte counters: the seed's `0 0 KUBE-FW-…` line is one of them."""
    address = _check_ip(vip)
    ns, pod = host_network_pod(cluster, node, namespace)
    argv = ["iptables", "-t", "nat", "-L", chain, "-n", "-v", "-x"]
    result = exec_in_pod(cluster, ns, pod, argv, container="keepalived")
    if not result.ok:
        raise KalabError(
            f"`{' '.join(argv)}` failed in {ns}/{pod} on {node} ({result.stderr.strip() or result.code}); "
            "the pod must be privileged with iptables in its image."
        )
    rules = listing_rows(result.stdout, address, port)
    if rules.empty:
        raise KalabError(
            f"{chain} on {node} has no rule for {address}:{port}; check {address} is the service's EXTERNAL-IP "
            "and that kube-proxy has programmed it."
        )
    return rules


# ---------------------------------------------------------------------------------------------- the keepalived pod


def keepalived_pod(
    cluster: Cluster, node: str | None = None, namespace: str = DEFAULT_NAMESPACE, group: str = DEFAULT_GROUP
) -> dict[str, Any]:
    """A Running keepalived pod of the group (the one on `node` when given) as the API returns it (`-o yaml`)."""
    pods = keepalived_pods(cluster, namespace, group)
    running = pods[pods["phase"] == "Running"]
    if node is not None:
        running = running[running["node"] == node]
    if running.empty:
        where = f" on {node}" if node is not None else ""
        raise KalabError(
            f"No keepalived pod of {namespace}/{group} is Running{where}; label the node and grant the SCC "
            "(notebook 01)."
        )
    name = str(running["pod"].iloc[0])
    try:
        found = cluster.core.read_namespaced_pod(name, namespace)
    except ApiException as err:
        raise fail(f"Reading pod {namespace}/{name}", err, "check your access to the namespace") from None
    return as_dict(cluster.api.sanitize_for_serialization(found))  # type: ignore[no-untyped-call]
