"""Notebook 02: the auto-assign block is sound, the patch is what was asked, and the cluster holds it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from kalab.model import objects
from kalab.model.check import Check, failed, passed
from kalab.model.cidr import CidrPlan


def block_is_sound(plan: CidrPlan) -> Check:
    name = "auto-assign block"
    if not plan.ok and plan.network is None:  # it does not even parse: the parameter is mistyped
        return failed(name, "Fix the CIDR: " + " ".join(plan.errors), "a typo in the auto_assign_cidr parameter")
    if not plan.ok:
        return failed(
            name,
            "Fix the CIDR: " + " ".join(plan.errors),
            "the block overlaps a network the cluster already uses",
            "oc get network.config cluster -o yaml",
            "cidr-overlaps-cluster",
        )
    return passed(name, f"{plan.network}: {plan.size} addresses, services get {plan.first} … {plan.last}")


def patch_is_exact(patch: Mapping[str, Any], expected: Mapping[str, Any], auto: str, allowed: str) -> Check:
    name = "merge patch"
    external = objects.spec(patch).get("externalIP") or {}
    if (
        patch != expected
        or external.get("autoAssignCIDRs") != [auto]
        or ((external.get("policy") or {}).get("allowedCIDRs") != [allowed])
    ):
        return failed(
            name,
            f"The patch is not the one asked for: {patch}",
            "the parameters changed between steps",
            "kalab render network-patch --help",
        )
    return passed(name, f"the merge patch sets only spec.externalIP: autoAssignCIDRs {auto}, allowedCIDRs {allowed}")


def dry_run_changed_nothing(applied: bool, changes: int, before: Any, after: Any) -> Check:
    name = "dry run"
    if applied:
        return failed(
            name,
            "The dry run reported the patch as applied",
            "the server ignored dryRun",
            "oc get network cluster -o yaml",
        )
    if before != after:
        return failed(
            name,
            "spec.externalIP changed during the dry run",
            "someone else patched the network config meanwhile",
            "oc get network cluster -o yaml",
        )
    return passed(name, f"{changes} change(s) validated, nothing applied")


def network_holds(now: Mapping[str, Any] | None, auto: str, allowed: Sequence[str], changes: int) -> Check:
    name = "network config holds the CIDRs"
    now = now or {}
    have_allowed = (now.get("policy") or {}).get("allowedCIDRs")
    look = "oc get network.config cluster -o jsonpath='{.spec.externalIP}'"
    if now.get("autoAssignCIDRs") != [auto]:
        return failed(
            name,
            f"autoAssignCIDRs is {now.get('autoAssignCIDRs')}, not [{auto}]",
            "the patch was refused or overwritten",
            look,
            "autoassign-missing",
        )
    if have_allowed != list(allowed):
        return failed(
            name,
            f"policy.allowedCIDRs is {have_allowed}, not {list(allowed)}",
            "the patch was refused or overwritten",
            look,
            "externalip-not-allowed",
        )
    return passed(name, f"autoAssignCIDRs {auto}, allowedCIDRs {', '.join(allowed)}; {changes} field(s) changed now")
