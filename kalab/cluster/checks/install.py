"""Notebook 01: the operator installed, the loadbalancer nodes labelled, the SCC granted, keepalived running."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from kalab.model.check import Check, failed, passed


def operator_installed(csv: str, phases: Sequence[str]) -> Check:
    name = "operator installed"
    if any(p.startswith(f"CSV {csv}: Succeeded") for p in phases):
        return passed(name, f"CSV {csv} Succeeded")
    last = phases[-1] if phases else "no phase reported"
    return failed(
        name,
        f"CSV {csv} did not reach Succeeded (last: {last})",
        "OLM could not install it: a wrong OperatorGroup or a catalog that is not ready",
        "oc get csv,subscription,operatorgroup -n keepalived-operator",
        "operator-not-ready",
    )


def nodes_labelled(node_table: pd.DataFrame, picked: Sequence[str], label: str) -> Check:
    """Exactly the picked nodes carry `label` (node_table: nodes.nodes(), with its labels column)."""
    name = "nodes labelled"
    if not picked:
        return failed(name, "No node is picked", "the picker was left empty", "oc get nodes")
    have = sorted(
        str(n) for n, labels in zip(node_table["name"], node_table["labels"], strict=True) if label in (labels or {})
    )
    missing = sorted(set(picked) - set(have))
    extra = sorted(set(have) - set(picked))
    look = f"oc get nodes -L {label}"
    if missing:
        return failed(
            name,
            f"{', '.join(missing)} lack the {label} label",
            "the label step did not run or was refused",
            look,
            "no-loadbalancer-nodes",
        )
    if extra:
        return failed(
            name,
            f"{', '.join(extra)} also carry {label} although not picked",
            "the label was added by hand or by an earlier choice",
            look,
        )
    return passed(name, f"exactly the picked nodes carry {label}: {', '.join(have)}")


def failed_create_explained(events: pd.DataFrame, already_granted: bool, namespace: str) -> Check:
    name = "FailedCreate explained"
    if already_granted:
        return passed(name, "the privileged SCC was granted on an earlier run, so nothing is refused")
    messages = " ".join(str(m) for m in events.get("message", pd.Series(dtype=str)))
    if "security context constraint" not in messages:
        return failed(
            name,
            f"No FailedCreate event mentions an SCC ({messages[:160] or 'no events'})",
            "the DaemonSet was not refused for the SCC, or it has not tried yet",
            f"oc get events -n {namespace} --field-selector reason=FailedCreate",
        )
    return passed(
        name, f"{len(events)} FailedCreate event(s): unable to validate against any security context constraint"
    )


def privileged_granted(granted: bool, namespace: str, form: str) -> Check:
    name = "privileged SCC granted"
    account = f"system:serviceaccount:{namespace}:default"
    if not granted:
        return failed(
            name,
            f"{account} may not use the privileged SCC",
            "the grant was not written or was removed",
            f"oc adm policy who-can use scc privileged -n {namespace}",
            "scc-missing",
        )
    return passed(name, f"{account} may use SCC privileged ({form})")


def keepalived_running(kpods: pd.DataFrame, picked: Sequence[str], namespace: str) -> Check:
    """One keepalived pod Running and Ready on each picked node, and on no other."""
    name = "keepalived pods running"
    running = kpods[kpods["phase"] == "Running"] if not kpods.empty else kpods
    on = sorted(str(n) for n in running["node"]) if not running.empty else []
    look = f"oc get pods -n {namespace} -o wide"
    if on != sorted(picked):
        return failed(
            name,
            f"keepalived runs on {', '.join(on) or 'no node'}, not on {', '.join(sorted(picked))}",
            "the DaemonSet has not caught up with the labels, or its pods are refused",
            look,
            "no-loadbalancer-nodes" if not on else "",
        )
    if not running["ready"].all():
        return failed(
            name,
            "Some keepalived pods are not Ready",
            "keepalived crash-loops (a wrong interface?)",
            f"oc logs -n {namespace} -l app=keepalivedgroup-workers -c keepalived",
            "wrong-interface",
        )
    return passed(name, f"keepalived Running and Ready on {', '.join(on)}")
