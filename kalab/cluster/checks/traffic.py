"""Notebook 04: the requests spread over the demo pods, the VIP's path through the nat table, the keepalived pod."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from kalab.model.check import Check, failed, passed

SEED_CONTAINERS = ("config-setup", "keepalived", "config-reloader", "prometheus-exporter")


def demo_endpoints(per_pod: pd.DataFrame, port: int = 80) -> list[str]:
    """The `IP:port` of every demo pod that answered (per_pod: traffic.Spread.per_pod), as the nat trace names them."""
    return sorted(f"{ip}:{port}" for ip in per_pod[per_pod["pod"].notna()]["pod_ip"])


def both_pods_answered(per_pod: pd.DataFrame, requests: int, namespace: str) -> Check:
    """Every demo pod answered, and nothing that is not a demo pod (per_pod: traffic.Spread.per_pod)."""
    name = "both pods answered"
    demo_rows = per_pod[per_pod["pod"].notna()]
    silent = demo_rows[demo_rows["requests"] == 0]["pod"].tolist()
    if silent:
        return failed(
            name,
            f"{', '.join(silent)} answered none of {requests} requests",
            "the pod is not Ready, so it is not an endpoint",
            f"oc get endpoints -n {namespace}",
        )
    strangers = per_pod[per_pod["pod"].isna()]["pod_ip"].tolist()
    if strangers:
        return failed(
            name,
            f"{', '.join(map(str, strangers))} answered but is no demo pod",
            "the service's selector (env=test) matches other pods",
            f"oc get pods -n {namespace} -l env=test",
        )
    return passed(name, ", ".join(f"{r.pod} {r.requests} ({r.share:.0%})" for r in demo_rows.itertuples()))


def split_is_even(per_pod: pd.DataFrame, band: tuple[float, float], namespace: str) -> Check:
    name = "even split"
    low, high = band
    demo_rows = per_pod[per_pod["pod"].notna()]
    off = demo_rows[(demo_rows["share"] < low) | (demo_rows["share"] > high)]
    if not off.empty:
        return failed(
            name,
            f"{', '.join(off['pod'])} got a share outside {low:.0%}–{high:.0%}",
            "an endpoint is missing from the service, or the rules are stale",
            f"oc get endpoints -n {namespace}",
        )
    return passed(name, f"every share is within {low:.0%}–{high:.0%}")


def none_failed(failed_count: int, requests: int, errors: Mapping[str, int], allowed: int, vip: str) -> Check:
    name = "no request failed"
    if failed_count > allowed:
        listed = ", ".join(f"{n} {e}" for e, n in errors.items())
        return failed(
            name,
            f"{failed_count} of {requests} requests failed ({listed}); at most {allowed} may",
            "the VIP is on no node, or on two, or a demo pod is not Ready",
            f"curl http://{vip}/ from the bastion, then notebook 06",
            "vip-nowhere",
        )
    return passed(name, f"{failed_count} of {requests} requests failed (at most {allowed} may)")


def reaches_the_pods(
    paths: pd.DataFrame, pod_endpoints: Sequence[str], name: str = "VIP reaches the demo pods", start: str | None = None
) -> Check:
    """The nat trace ends at exactly the demo pods' IP:port, with probabilities adding up to 1."""
    look = "iptables-save -t nat (inside the keepalived pod on the node)"
    if start and not paths["path"].str.startswith(start).all():
        return failed(name, f"Not every path starts at {start}", "the trace started elsewhere", look)
    endpoints = sorted(paths["endpoint"])
    if endpoints != sorted(pod_endpoints):
        return failed(
            name,
            f"The rules DNAT to {', '.join(endpoints) or 'nothing'}, not to the demo pods "
            f"{', '.join(sorted(pod_endpoints))}",
            "kube-proxy has not synced since the pods changed",
            look,
        )
    total = float(paths["probability"].sum())
    if abs(total - 1.0) > 1e-6:
        return failed(
            name,
            f"The paths' probabilities add up to {total:.4f}, not 1",
            "a KUBE-SVC chain is incomplete, so some packets would not be DNATed",
            look,
        )
    dnat = ", ".join(f"{r.endpoint} {r.pod} ({r.probability:.0%})" for r in paths.itertuples())
    return passed(name, f"DNAT to {dnat}, total {total:.2f}")


def fw_line_explained(rules: pd.DataFrame, fw_chain: str, vip: str, holder: str, service: str) -> Check:
    """The seed's KUBE-FW rule is there with its comment, after an external-IP rule, with counters 0 0."""
    name = "KUBE-FW counters 0 0"
    look = f"iptables -t nat -L KUBE-SERVICES -n -v -x (on {holder})"
    fw = rules[rules["target"] == fw_chain]
    if len(fw) != 1:
        return failed(
            name,
            f"KUBE-SERVICES on {holder} has {len(fw)} rule(s) jumping to {fw_chain} for {vip}, not one as in the seed",
            "the service is not of type LoadBalancer, or kube-proxy is stale",
            look,
        )
    row = fw.iloc[0]
    if row["comment"] != f"{service}:http loadbalancer IP":
        return failed(name, f"The {fw_chain} rule's comment is {row['comment']!r}", "another service's rule", look)
    external = rules[rules["comment"].str.endswith("external IP") & rules["target"].str.startswith("KUBE-SVC-")]
    if external.empty or external["rule"].min() > row["rule"]:
        return failed(
            name,
            f"No external-IP rule for {vip} comes before the {fw_chain} rule",
            "the VIP is not in the service's spec.externalIPs",
            look,
        )
    if row["packets"] != 0:
        return failed(
            name,
            f"The {fw_chain} rule counted {row['packets']} packets",
            "something reached it that the external-IP rules did not match",
            look,
        )
    counted = int(external["packets"].sum())
    return passed(
        name,
        f"{fw_chain} (rule {row['rule']}) counted 0 0; the external-IP rule(s) before it counted {counted} packets",
    )


def keepalived_pod_like_seed(anatomy: pd.DataFrame, pod: str) -> Check:
    """The pod has the seed's containers, hostNetwork, a privileged keepalived and the exporter on hostPort 9650."""
    name = "keepalived pod as in the seed"
    look = f"oc get pod {pod} -n keepalived-operator -o yaml"
    missing = sorted(set(SEED_CONTAINERS) - set(anatomy["container"]))
    if missing:
        return failed(name, f"The pod lacks the container(s) {', '.join(missing)}", "another operator version", look)
    traits = set(zip(anatomy["aspect"], anatomy["container"], strict=True))
    if ("hostNetwork", "") not in traits:
        return failed(
            name,
            "The pod does not use hostNetwork, so keepalived cannot put VIPs on the node",
            "the DaemonSet was changed by hand",
            look,
        )
    if ("privileged", "keepalived") not in traits:
        return failed(name, "The keepalived container is not privileged", "the DaemonSet was changed by hand", look)
    ports = anatomy[(anatomy["aspect"] == "hostPort") & (anatomy["container"] == "prometheus-exporter")]["detail"]
    if not ports.str.contains("hostPort 9650").any():
        return failed(name, "The exporter has no hostPort 9650", "the DaemonSet was changed by hand", look)
    return passed(
        name,
        f"{pod}: {', '.join(sorted(SEED_CONTAINERS))}; hostNetwork, privileged keepalived, exporter on hostPort 9650",
    )
