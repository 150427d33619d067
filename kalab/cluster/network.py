"""The cluster's externalIP config (networks.config.openshift.io/cluster): read, diff, patch with dry-run, undo.

The patch is the seed's JSON merge patch. A journal file records the original `spec.externalIP` the first time
a patch is applied, so `undo_external_ip` can put it back exactly (removing the field if it was absent).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic.exceptions import ResourceNotFoundError

from kalab.cluster._common import Progress, fail, report
from kalab.cluster.connect import Cluster
from kalab.model import manifests, objects
from kalab.model.cidr import cidr_problem, plan_cidr
from kalab.model.errors import KalabError

CONFIG_API = "config.openshift.io/v1"
NAME = "cluster"
ALLOWED_PATH = "spec.externalIP.policy.allowedCIDRs"
AUTO_PATH = "spec.externalIP.autoAssignCIDRs"

Change = tuple[str, Any, Any]


@dataclass(frozen=True)
class PatchResult:
    changes: list[Change]
    warnings: list[str] = field(default_factory=list)
    applied: bool = False
    dry_run: bool = False
    server_dry_run: bool = False


def _networks(cluster: Cluster) -> Any:
    try:
        return cluster.dynamic.resources.get(api_version=CONFIG_API, kind="Network")
    except ResourceNotFoundError:
        raise KalabError(
            "The cluster does not serve networks.config.openshift.io; externalIP CIDRs are an OpenShift setting, "
            "so connect to an OpenShift cluster (or the lab)."
        ) from None


def read_network(cluster: Cluster) -> dict[str, Any]:
    """The whole networks.config.openshift.io/cluster object as a dict."""
    try:
        return dict(_networks(cluster).get(name=NAME).to_dict())
    except ApiException as err:
        raise fail("Reading network.config/cluster", err, "use a cluster-admin kubeconfig") from None


def read_external_ip(cluster: Cluster) -> dict[str, Any] | None:
    """`spec.externalIP` of the cluster's network config, or None when it is not set."""
    value = objects.spec(read_network(cluster)).get("externalIP")
    return dict(value) if isinstance(value, dict) else None


def auto_assign_cidrs(cluster: Cluster) -> list[str]:
    """`spec.externalIP.autoAssignCIDRs` of the cluster's network config (empty when not set)."""
    blocks = (read_external_ip(cluster) or {}).get("autoAssignCIDRs") or []
    return [str(b) for b in blocks]


def _get(obj: dict[str, Any] | None, path: str) -> Any:
    cur: Any = obj
    for part in path.split(".")[2:]:  # below spec.externalIP
        cur = cur.get(part) if isinstance(cur, dict) else None
    return cur


def diff_patch(cluster: Cluster, allowed: str, auto_assign: str) -> list[Change]:
    """What the patch would change: (path, before, after) for each field that differs; empty when nothing would."""
    manifests.network_patch(allowed, auto_assign)  # validates the CIDRs' syntax
    current = read_external_ip(cluster)
    changes: list[Change] = []
    for path, after in ((ALLOWED_PATH, [allowed]), (AUTO_PATH, [auto_assign])):
        before = _get(current, path)
        if before != after:
            changes.append((path, before, after))
    return changes


def check_cidrs(cluster: Cluster, allowed: str, auto_assign: str, machine_network: str | None = None) -> list[str]:
    """Validate both CIDRs against the cluster's own networks; raise on the first error, return the warnings."""
    for text, role in ((allowed, "the allowed range"), (auto_assign, "the auto-assign range")):
        problem = cidr_problem(text, role)
        if problem is not None:
            raise KalabError(problem)
    spec = objects.spec(read_network(cluster))
    cluster_net = next((c.get("cidr") for c in spec.get("clusterNetwork") or [] if c.get("cidr")), "10.254.0.0/16")
    service_net = next(iter(spec.get("serviceNetwork") or []), "172.30.0.0/16")
    plan = plan_cidr(auto_assign, [allowed], str(cluster_net), str(service_net), machine_network)
    if plan.errors:
        raise KalabError(plan.errors[0])
    return list(plan.warnings)


def _server_dry_run_supported(cluster: Cluster) -> bool:
    """dryRun=All is GA since Kubernetes 1.18 (OpenShift 4.5)."""
    try:
        info = client.VersionApi(cluster.api).get_code()
        return (int(info.major), int("".join(ch for ch in info.minor if ch.isdigit()) or 0)) >= (1, 18)
    except (ApiException, ValueError):
        return False


def patch_external_ip(
    cluster: Cluster,
    allowed: str,
    auto_assign: str,
    dry_run: bool = False,
    journal: Path | None = None,
    machine_network: str | None = None,
    progress: Progress = None,
) -> PatchResult:
    """Apply the seed's merge patch (`oc patch network cluster --type=merge`), or with dry_run only show the diff.

    CIDR errors stop before anything is sent; warnings are returned. With `journal`, the original
    `spec.externalIP` is recorded there the first time (never overwritten) so `undo_external_ip` can restore it.
    """
    warnings = check_cidrs(cluster, allowed, auto_assign, machine_network)
    changes = diff_patch(cluster, allowed, auto_assign)
    body = manifests.network_patch(allowed, auto_assign)
    networks = _networks(cluster)
    if dry_run:
        server = _server_dry_run_supported(cluster)
        if server:
            try:
                networks.patch(name=NAME, body=body, content_type="application/merge-patch+json", dry_run="All")
            except ApiException as err:
                raise fail("The server's dry run of the patch", err, "fix the CIDRs") from None
        report(progress, f"dry run: {len(changes)} change(s), nothing applied")
        return PatchResult(changes, warnings, applied=False, dry_run=True, server_dry_run=server)
    if not changes:
        report(progress, "externalIP already matches; nothing to patch")
        return PatchResult(changes, warnings)
    if journal is not None:
        record_journal(cluster, journal)
    try:
        networks.patch(name=NAME, body=body, content_type="application/merge-patch+json")
    except ApiException as err:
        raise fail(
            "Patching network.config/cluster", err, "use a cluster-admin kubeconfig and check the CIDRs"
        ) from None
    report(progress, f"patched externalIP: {len(changes)} change(s)")
    return PatchResult(changes, warnings, applied=True)


def record_journal(cluster: Cluster, journal: Path) -> bool:
    """Write the current `spec.externalIP` to `journal` unless it already holds one; True when written."""
    journal = Path(journal)
    if journal.exists():
        return False
    entry = {"externalIP": read_external_ip(cluster), "recorded_at": time.time()}
    journal.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".kalab-journal-", dir=journal.parent)
    with os.fdopen(fd, "w") as out:
        json.dump(entry, out, indent=2)
    os.replace(tmp, journal)
    return True


def default_journal(state_dir: str | os.PathLike[str] | None = None, server: str | None = None) -> Path:
    """Where the undo journal lives unless you say otherwise: the lab's state directory, else this user's state
    directory, one journal per cluster (`server` is its API URL), so no other user or cluster can mix in."""
    if state_dir:
        return Path(state_dir) / "externalip-undo.json"
    state_home = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    cluster = hashlib.sha256((server or "").encode()).hexdigest()[:12]
    return state_home / "kalab" / "journals" / cluster / "externalip-undo.json"


def journal_for(cluster: Cluster, given: str | os.PathLike[str] | None = None) -> Path:
    """The undo journal to use for `cluster`: `given` if set, else default_journal in its site's state directory."""
    if given:
        return Path(given)
    from kalab.cluster.sites import site_for  # here: sites pulls in the failover machinery, which most callers skip

    return default_journal(site_for(cluster).state_dir, cluster.server)


def undo_external_ip(cluster: Cluster, journal: Path, progress: Progress = None) -> dict[str, Any] | None:
    """Restore `spec.externalIP` exactly as the journal recorded it (absent → removed) and delete the journal."""
    journal = Path(journal)
    try:
        original = json.loads(journal.read_text())["externalIP"]
    except FileNotFoundError:
        raise KalabError(
            f"There is no undo journal at {journal}; nothing was patched with it, so nothing to undo."
        ) from None
    except (ValueError, KeyError, TypeError):
        raise KalabError(
            f"The undo journal {journal} is not a kalab journal; restore spec.externalIP by hand."
        ) from None
    current = read_external_ip(cluster)
    if original is None:
        ops = [{"op": "remove", "path": "/spec/externalIP"}] if current is not None else []
    else:
        ops = [{"op": "add", "path": "/spec/externalIP", "value": original}]
    if ops:
        try:
            _networks(cluster).patch(name=NAME, body=ops, content_type="application/json-patch+json")
        except ApiException as err:
            raise fail("Restoring spec.externalIP", err, f"restore it by hand from {journal}") from None
    journal.unlink()
    report(progress, "restored the original spec.externalIP" + (" (absent)" if original is None else ""))
    return original if isinstance(original, dict) else None
