"""Notebook 03: the demo pods run where they were pinned, and the service got its EXTERNAL-IP from the block."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

import pandas as pd

from kalab.model.check import Check, failed, passed


def pods_pinned(running: pd.DataFrame, picked: Sequence[str], namespace: str) -> Check:
    name = "demo pods pinned"
    look = f"oc get pods -n {namespace} -o wide"
    if running.empty or not (running["phase"] == "Running").all():
        return failed(name, "Not every demo pod is Running", "a node is not Ready or the image cannot be pulled", look)
    on = sorted(str(n) for n in running["node"])
    if on != sorted(picked):
        return failed(
            name,
            f"The pods run on {', '.join(on)}, not on {', '.join(sorted(picked))}",
            "the pods were deployed with another choice and not moved",
            look,
        )
    return passed(name, f"{len(running)} pods Running on {', '.join(on)}")


def vip_in_block(vip: str, blocks: Sequence[str]) -> Check:
    name = "EXTERNAL-IP assigned"
    inside = [b for b in blocks if ipaddress.ip_address(vip) in ipaddress.ip_network(b, strict=False)]
    if not inside:
        return failed(
            name,
            f"EXTERNAL-IP {vip} is outside the auto-assign block(s) {', '.join(blocks) or '(none)'}",
            "the network config changed after the address was given",
            "oc get svc -A -o wide",
            "autoassign-missing" if not blocks else "",
        )
    return passed(name, f"EXTERNAL-IP {vip} is inside {ipaddress.ip_network(inside[0], strict=False)}")
