"""The runbook's stages as states a cluster is brought to, up or down, through the verbs the notebooks use.

fresh      nothing of the runbook: no demo, spec.externalIP as the undo journal recorded it, no KeepalivedGroup, no
           operator (Subscription, CSV, OperatorGroup and namespace deleted; OLM leaves the CRD, as it does), no
           loadbalancer label, no privileged SCC grant.
installed  after notebook 01: the operator installed through OLM, exactly the chosen nodes labelled, the
           KeepalivedGroup applied, the privileged SCC granted, one Running and Ready keepalived pod per node.
patched    after notebook 02: + spec.externalIP's CIDRs patched, the original kept in the undo journal.
deployed   after notebook 03: + the demo pods on their nodes, the service has its VIP and one node is MASTER for it.

`reset` converges: whatever the cluster holds, it leaves what the target stage has and undoes what later stages
did, so a half-finished notebook run or a second reset is no special case.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic.exceptions import NotFoundError, ResourceNotFoundError

from kalab.cluster import demo, exporter, keepalived, network, nodes, olm, scc
from kalab.cluster._common import Progress, as_dict, fail, poll, report
from kalab.cluster.connect import Cluster
from kalab.model import manifests, objects
from kalab.model.errors import KalabError

STAGES = ("fresh", "installed", "patched", "deployed")
DEMO_SERVICE = "demo"


@dataclass(frozen=True)
class Runbook:
    """The notebooks' parameters (01, 02, 03 in that order), with their defaults; `journal` is notebook 02's."""

    journal: Path
    loadbalancer_nodes: Sequence[str] = ("master-1", "master-2")
    interface: str = "kalab-eth0"
    namespace: str = "keepalived-operator"
    allowed_cidr: str = "172.21.6.33/27"
    auto_assign_cidr: str = "172.21.6.33/27"
    machine_network: str | None = "192.168.7.0/24"
    demo_nodes: Sequence[str] = ("master-0", "master-2")
    demo_namespace: str = "demo"
    timeout: float = 120  # per step that waits (operator, pods, VIP)

    @property
    def group(self) -> str:
        return f"{self.namespace}/{keepalived.DEFAULT_GROUP}"


@dataclass
class Reset:
    """What a reset did: the stage reached, one line per change (empty when the cluster was there already), and
    for `deployed` the VIP and the node holding it."""

    stage: str
    changes: list[str] = field(default_factory=list)
    vip: str | None = None
    holder: str | None = None


def stage_index(stage: str) -> int:
    if stage not in STAGES:
        raise KalabError(f'There is no stage "{stage[:40]}"; pick one of {", ".join(STAGES)}.')
    return STAGES.index(stage)


def reset(cluster: Cluster, stage: str, runbook: Runbook, progress: Progress = None) -> Reset:
    """Bring the cluster to `stage`: undo the later stages (latest first), then make sure the earlier ones hold."""
    target = stage_index(stage)
    done = Reset(stage)

    def changed(line: str) -> None:
        done.changes.append(line)
        report(progress, line)

    if target < STAGES.index("deployed"):
        _remove_demo(cluster, runbook, changed)
    if target < STAGES.index("patched"):
        _undo_network(cluster, runbook, changed)
    if target < STAGES.index("installed"):
        _remove_install(cluster, runbook, changed)
        return done
    _install(cluster, runbook, changed)
    if target >= STAGES.index("patched"):
        _patch_network(cluster, runbook, changed)
    if target >= STAGES.index("deployed"):
        _deploy(cluster, runbook, changed)
    # The keepalived pods are waited for last: a pod that starts with the demo's VIP already in its config elects a
    # MASTER at once, where one started earlier waits for the operator's config reloader (every 5 s) first.
    _wait_keepalived_on(cluster, runbook.namespace, runbook.loadbalancer_nodes, runbook.timeout)
    if target >= STAGES.index("deployed"):
        ns = runbook.demo_namespace
        done.vip = demo.service_vip(cluster, namespace=ns, name=DEMO_SERVICE, timeout=runbook.timeout)
        done.holder = exporter.wait_for_master(
            cluster, instance=f"{ns}/{DEMO_SERVICE}", timeout=runbook.timeout, namespace=runbook.namespace
        )
    return done


# -- going up ------------------------------------------------------------------------------------------------


def _changes(verb_messages: list[str]) -> list[str]:
    """A verb's progress lines that say it changed something (it reports "already …" when it did not)."""
    return [m for m in verb_messages if "already" not in m]


def _install(cluster: Cluster, runbook: Runbook, changed: Callable[[str], None]) -> None:
    """Notebook 01: operator, labels, KeepalivedGroup, SCC grant (the keepalived pods are waited for by reset)."""
    ns = runbook.namespace
    if _installed_csv(cluster, runbook) is None:
        csv = olm.install_operator(cluster, namespace=ns, timeout=runbook.timeout)
        changed(f"installed the operator through OLM (CSV {csv})")
    labels = nodes.set_label_on(cluster, runbook.loadbalancer_nodes)  # notebook 01's picker: exactly these nodes
    if labels.added or labels.removed:
        changed(labels.sentence())
    said: list[str] = []
    keepalived.apply_keepalived_group(cluster, progress=said.append, namespace=ns, interface=runbook.interface)
    for line in _changes(said):
        changed(line)
    if not scc.has_privileged(cluster, ns):
        changed(f"granted SCC privileged to {manifests.scc_user(ns)} ({scc.grant_privileged(cluster, ns)} form)")


def _installed_csv(cluster: Cluster, runbook: Runbook) -> str | None:
    """The Subscription's CSV when it is installed and Succeeded, else None."""
    try:
        sub = as_dict(
            cluster.custom.get_namespaced_custom_object(
                olm.OLM_GROUP, olm.OLM_VERSION, runbook.namespace, "subscriptions", "keepalived-operator"
            )
        )
        name = objects.status(sub).get("installedCSV")
        if not name:
            return None
        csv = as_dict(
            cluster.custom.get_namespaced_custom_object(
                olm.OLM_GROUP, olm.OLM_VERSION, runbook.namespace, "clusterserviceversions", name
            )
        )
    except ApiException as err:
        if err.status == 404:
            return None
        raise fail("Reading the operator's Subscription", err, "use a cluster-admin kubeconfig") from None
    return str(name) if objects.phase_of(csv) == "Succeeded" else None


def _unlabel_all(cluster: Cluster, changed: Callable[[str], None]) -> None:
    """No node carries the loadbalancer label (nodes.set_label_on refuses an empty choice, rightly for a picker)."""
    table = nodes.nodes(cluster)
    have = [
        str(n) for n, labels in zip(table["name"], table["labels"], strict=True) if nodes.LOADBALANCER_LABEL in labels
    ]
    if have:
        nodes.unlabel_nodes(cluster, have)
        changed(f"removed {nodes.LOADBALANCER_LABEL} from {', '.join(have)}")


def _wait_keepalived_on(cluster: Cluster, namespace: str, wanted: Sequence[str], timeout: float) -> None:
    """Until the group's pods are exactly one Running and Ready pod on each wanted node (and none elsewhere)."""

    def settled() -> bool:
        pods = keepalived.keepalived_pods(cluster, namespace)
        ready = pods[(pods["phase"] == "Running") & pods["ready"]]
        return len(pods) == len(wanted) and sorted(ready["node"]) == sorted(wanted)

    def timed_out() -> KalabError:
        pods = keepalived.keepalived_pods(cluster, namespace)
        seen = ", ".join(f"{p.pod} on {p.node} {p.phase}" for p in pods.itertuples()) or "none"
        return KalabError(
            f"The keepalived pods are not one Ready pod on each of {', '.join(wanted)} after {timeout:g} s "
            f"(pods: {seen}); see `oc get ds,pods,events -n {namespace}`."
        )

    poll(settled, timeout, timed_out)


def _patch_network(cluster: Cluster, runbook: Runbook, changed: Callable[[str], None]) -> None:
    said: list[str] = []
    network.patch_external_ip(
        cluster,
        runbook.allowed_cidr,
        runbook.auto_assign_cidr,
        journal=runbook.journal,
        machine_network=runbook.machine_network,
        progress=said.append,
    )
    for line in _changes(said):
        changed(f"{line} (undo journal {runbook.journal})")


def _deploy(cluster: Cluster, runbook: Runbook, changed: Callable[[str], None]) -> None:
    """Notebook 03: the demo pods on their nodes (deploy_demo moves any pinned elsewhere) and its service."""
    ns = runbook.demo_namespace
    if _namespace_phase(cluster, ns) == "Terminating":  # deleted by someone else: creating in it would fail
        _delete_namespace(cluster, ns, runbook.timeout)
    said: list[str] = []
    demo.deploy_demo(
        cluster,
        namespace=ns,
        nodes=runbook.demo_nodes,
        group=runbook.group,
        timeout=runbook.timeout,
        progress=said.append,
    )
    # Its progress also reports pod phases ("test-0: Running, …"); what it changed are the created/deleted lines.
    for line in said:
        if line.startswith(("created ", "deleted ")):
            changed(line)


# -- going down ----------------------------------------------------------------------------------------------


def _namespace_phase(cluster: Cluster, namespace: str) -> str | None:
    try:
        found = cluster.core.read_namespace(namespace)
    except ApiException as err:
        if err.status == 404:
            return None
        raise fail(f"Reading namespace {namespace}", err, "use a cluster-admin kubeconfig") from None
    return str(found.status.phase) if found.status and found.status.phase else "Active"


def _delete_namespace(cluster: Cluster, namespace: str, timeout: float) -> bool:
    """Delete the namespace (with everything in it) and wait until it is gone; False when there was none."""
    if _namespace_phase(cluster, namespace) is None:
        return False
    try:
        cluster.core.delete_namespace(namespace)
    except ApiException as err:
        if err.status != 404:
            raise fail(f"Deleting namespace {namespace}", err, "use a cluster-admin kubeconfig") from None
    poll(
        lambda: _namespace_phase(cluster, namespace) is None,
        timeout,
        lambda: KalabError(
            f"The namespace {namespace} is still Terminating after {timeout:g} s; see "
            f"`oc get namespace {namespace} -o yaml` for what holds it."
        ),
    )
    return True


def _remove_demo(cluster: Cluster, runbook: Runbook, changed: Callable[[str], None]) -> None:
    """The seed's "to restore" and the namespace notebook 03 created."""
    if _delete_namespace(cluster, runbook.demo_namespace, runbook.timeout):
        changed(f"deleted the demo (namespace {runbook.demo_namespace} and everything in it)")


def _undo_network(cluster: Cluster, runbook: Runbook, changed: Callable[[str], None]) -> None:
    if runbook.journal.exists():
        said: list[str] = []
        network.undo_external_ip(cluster, runbook.journal, progress=said.append)
        for line in said:
            changed(line)
    elif network.read_external_ip(cluster) is not None:
        changed(
            f"left spec.externalIP as it is: there is no undo journal at {runbook.journal}, so what it was before "
            "is unknown"
        )


def _remove_install(cluster: Cluster, runbook: Runbook, changed: Callable[[str], None]) -> None:
    """Undo notebook 01, latest first: the group (its pods go with it), the SCC grant, the labels, the operator."""
    ns = runbook.namespace
    if _delete_group(cluster, ns):
        poll(
            lambda: keepalived.keepalived_pods(cluster, ns).empty,
            runbook.timeout,
            lambda: KalabError(
                f"The keepalived pods are still there {runbook.timeout:g} s after their group was deleted; "
                f"see `oc get pods -n {ns}`."
            ),
        )
        changed(f"deleted KeepalivedGroup {runbook.group} and its keepalived pods")
    if _revoke_privileged(cluster, ns):
        changed(f"revoked SCC privileged from {manifests.scc_user(ns)}")
    _unlabel_all(cluster, changed)
    if _uninstall_operator(cluster, runbook):
        changed(f"uninstalled the operator (Subscription, CSV, OperatorGroup, namespace {ns})")


def _delete_group(cluster: Cluster, namespace: str) -> bool:
    """Delete the KeepalivedGroup; False when there is none (or no KeepalivedGroup kind: never installed)."""
    try:
        cluster.custom.delete_namespaced_custom_object(
            keepalived.GROUP, keepalived.VERSION, namespace, keepalived.PLURAL, keepalived.DEFAULT_GROUP
        )
    except ApiException as err:
        if err.status == 404:
            return False
        raise fail("Deleting the KeepalivedGroup", err, "use a cluster-admin kubeconfig") from None
    return True


def _revoke_privileged(cluster: Cluster, namespace: str) -> bool:
    """Undo scc.grant_privileged in both its forms; True when there was a grant."""
    user, revoked = manifests.scc_user(namespace), False
    try:
        sccs = cluster.dynamic.resources.get(api_version=scc.SCC_API, kind="SecurityContextConstraints")
        users = list(sccs.get(name="privileged").to_dict().get("users") or [])
    except (ResourceNotFoundError, NotFoundError):
        users = []  # not OpenShift: only the RBAC form can exist
    if user in users:
        index = users.index(user)
        # The test op makes the removal fail rather than drop someone else's entry if the list moved meanwhile.
        patch = [{"op": "test", "path": f"/users/{index}", "value": user}, {"op": "remove", "path": f"/users/{index}"}]
        try:
            sccs.patch(name="privileged", body=patch, content_type="application/json-patch+json")
        except ApiException as err:
            raise fail("Removing the SCC grant", err, "run the reset again") from None
        revoked = True
    binding = manifests.scc_grant(namespace, form="rbac")
    assert isinstance(binding, dict)
    try:
        cluster.rbac.delete_namespaced_role_binding(objects.name_of(binding), namespace)
        revoked = True
    except ApiException as err:
        if err.status != 404:
            raise fail("Deleting the SCC RoleBinding", err, "use a cluster-admin kubeconfig") from None
    return revoked


def _uninstall_operator(cluster: Cluster, runbook: Runbook) -> bool:
    """OLM's uninstall (delete the Subscription, then its CSV), then the OperatorGroup's namespace."""
    ns, found = runbook.namespace, False
    custom: Any = cluster.custom
    for plural in ("subscriptions", "clusterserviceversions"):
        try:
            listed = as_dict(custom.list_namespaced_custom_object(olm.OLM_GROUP, olm.OLM_VERSION, ns, plural))
        except ApiException as err:
            if err.status == 404:
                continue
            raise fail(f"Listing {plural} in {ns}", err, "use a cluster-admin kubeconfig") from None
        for item in listed.get("items") or []:
            found = True
            with contextlib.suppress(ApiException):  # gone meanwhile
                custom.delete_namespaced_custom_object(
                    olm.OLM_GROUP, olm.OLM_VERSION, ns, plural, objects.name_of(item)
                )
    removed = _delete_namespace(cluster, ns, runbook.timeout) or found
    _wait_cluster_rbac_gone(cluster, ns, runbook.timeout)
    return removed


def _wait_cluster_rbac_gone(cluster: Cluster, namespace: str, timeout: float) -> None:
    """OLM deletes the ClusterRoles and bindings it made for a CSV (labelled olm.owner.namespace) on its own, after
    the CSV is gone: wait for that too, so that "fresh" holds no operator when reset returns."""
    selector = f"olm.owner.namespace={namespace}"

    def gone() -> bool:
        try:
            roles = cluster.rbac.list_cluster_role(label_selector=selector).items
            bindings = cluster.rbac.list_cluster_role_binding(label_selector=selector).items
        except ApiException as err:
            raise fail("Listing the operator's ClusterRoles", err, "use a cluster-admin kubeconfig") from None
        return not roles and not bindings

    poll(
        gone,
        timeout,
        lambda: KalabError(
            f"OLM left ClusterRoles or bindings labelled {selector} after {timeout:g} s; look at them with "
            f"`oc get clusterroles,clusterrolebindings -l {selector}` and at OLM's logs."
        ),
    )
