"""Notebook 05: one MASTER advertising at advert_int, the VIP on it, and takeovers as VRRP's formulas predict."""

from __future__ import annotations

import pandas as pd

from kalab.model.check import Check, failed, passed
from kalab.model.failover import TAKEOVER_SLACK_MS


def one_master_advertising(rates: pd.DataFrame, advert_int: float, instance: str) -> Check:
    """Exactly one MASTER, sending one advert per advert_int (±30 %), and no BACKUP advertising."""
    name = "exporter shows one MASTER"
    look = "oc exec -n keepalived-operator <pod> -c keepalived -- ip -o addr (and the exporter at :9650/metrics)"
    masters = rates[rates["state"] == "MASTER"]
    if len(masters) != 1:
        return failed(
            name,
            f"{len(masters)} nodes are MASTER for {instance}",
            "VRRP adverts do not get between the nodes" if len(masters) > 1 else "no election won yet",
            look,
            "vrrp-blocked" if len(masters) > 1 else "vip-nowhere",
        )
    rate = float(masters["adverts_per_s"].iloc[0])
    expected = 1 / advert_int
    if abs(rate - expected) > 0.3 * expected:
        return failed(
            name,
            f"The MASTER sends {rate:.2f} adverts/s, not {expected:g} (±30 %)",
            "keepalived runs with another advert_int than the configuration says",
            look,
        )
    if not (rates[rates["state"] != "MASTER"]["adverts_per_s"] == 0).all():
        return failed(
            name, "A BACKUP is advertising too", "a node flips between MASTER and BACKUP", look, "vrid-collision"
        )
    node = masters["node"].iloc[0]
    return passed(name, f"{node} is MASTER and sends {rate:.2f} adverts/s (advert_int {advert_int:g} s, ±30 %)")


def vip_on_master(interfaces: pd.DataFrame, vip: str, master: str) -> Check:
    name = "VIP on the MASTER"
    held = interfaces[interfaces["address"] == vip]
    if len(held) != 1:
        return failed(
            name,
            f"{master} is MASTER but {vip} is not among its addresses",
            "keepalived cannot add the address (a wrong interface?)",
            f"ip -o addr on {master}",
            "vip-not-on-master",
        )
    return passed(name, f"{vip} is on {master}'s {held['interface'].iloc[0]}")


def _takeover_text(comparison: pd.DataFrame) -> str:
    return ", ".join(
        f"{r.kind} {r.takeover_ms:.0f} ms (formula ≤ {r.expected_takeover_ms:.0f} ms)" for r in comparison.itertuples()
    )


def takeover_within_formula(measured: pd.DataFrame, comparison: pd.DataFrame) -> Check:
    """Every failure was taken over by the other node, within the formula's window plus the stated allowance."""
    name = "takeover as VRRP predicts"
    allowance = f"{TAKEOVER_SLACK_MS:.0f} ms are allowed beyond the formula for gratuitous ARP and exporter scrapes"
    look = "the failover timeline plots above"
    if measured.empty:
        return failed(name, "No failover trial ran", "every failure kind was skipped on this cluster", look)
    if not measured["new_master"].notna().all():
        return failed(
            name,
            "A failure was never taken over",
            "the BACKUP did not notice the MASTER was gone",
            look,
            "vrrp-blocked",
        )
    if not (measured["new_master"] != measured["old_master"]).all():
        return failed(name, "The old MASTER kept the VIP", "the failure was not injected", look)
    late = comparison[~comparison["within_formula"].astype(bool)]
    if not late.empty:
        return failed(
            name,
            f"{_takeover_text(late)} fell outside the window; {allowance}",
            "a loaded machine or a slow network delays the election",
            look,
        )
    return passed(name, f"{_takeover_text(comparison)}; {allowance}")


def tuned_faster_and_restored(
    comparison: pd.DataFrame, tuned: pd.DataFrame, tuned_advert_int: float, restored: bool
) -> Check:
    """The faster timing kept to its own formula, was faster than before, and the original timing is back."""
    name = "tuned failover measured"
    look = "oc get svc demo -n demo -o yaml (the verbatimconfig annotation)"
    late = tuned[~tuned["within_formula"].astype(bool)]
    if not late.empty:
        return failed(
            name,
            f"With advert_int {tuned_advert_int:g} s, {', '.join(late['kind'])} fell outside the formula",
            "the new timing did not reach keepalived",
            look,
        )
    before = comparison.set_index("kind")["takeover_ms"]
    after = tuned.set_index("kind")["takeover_ms"]
    common = [k for k in after.index if k in before.index]
    slower = [k for k in common if not after[k] < before[k]]
    if slower:
        return failed(
            name,
            f"The tuned timing was not faster for {', '.join(slower)}",
            "the new timing did not reach keepalived",
            look,
        )
    if not restored:
        return failed(name, "The service's timing was not restored", "the restore step failed", look)
    gains = ", ".join(f"{k} {before[k]:.0f} → {after[k]:.0f} ms" for k in common)
    return passed(name, f"{gains or 'measured'}; original timing restored")
