"""Per-kind rules of the API server's writes, as kube-apiserver's registry strategies hold them.

What the verb handlers (`handlers`) ask of a kind, whatever the verb: how a create is prepared (fields only the server
sets dropped, a name no URL could address refused, the status it starts with), how an update is (the name the URL
gives), which patches it takes, what a delete answers, the scale subresource, and the namespace lifecycle hooks (no new
content in a Terminating namespace; a deleted namespace handed to the terminator). Defaults are `defaults` (applied by
the store), field ownership `fieldmanager`, the namespace controller `namespaces`.
"""

from __future__ import annotations

from kalab.lab.apiserver import fieldmanager
from kalab.lab.apiserver.errors import ApiError, bad_request, forbidden_on
from kalab.lab.apiserver.namespaces import NamespaceTerminator
from kalab.lab.apiserver.resources import ResourceType
from kalab.lab.apiserver.store import Obj, Store
from kalab.model import objects

# Set by the server alone: whatever a client sends for them on a create is dropped.
SERVER_SET = ("resourceVersion", "uid", "creationTimestamp", "deletionTimestamp", "selfLink")

# Groups kube-apiserver (or OpenShift's own API servers) serve from compiled types, which is what strategic merge
# patch needs; everything else is a CRD on a real cluster (config.openshift.io, OLM, monitoring, SCC in 4.x) and
# refuses it with 415, so a runbook that works here works there.
STRATEGIC_GROUPS = frozenset(
    {
        "",
        "apps",
        "batch",
        "autoscaling",
        "policy",
        "rbac.authorization.k8s.io",
        "apiextensions.k8s.io",
        "networking.k8s.io",
        "storage.k8s.io",
        "coordination.k8s.io",
        "discovery.k8s.io",
        "scheduling.k8s.io",
        "node.k8s.io",
        "certificates.k8s.io",
        "events.k8s.io",
        "admissionregistration.k8s.io",
        "apiregistration.k8s.io",
        "project.openshift.io",
        "route.openshift.io",
        "apps.openshift.io",
    }
)


def allows_strategic_merge(rt: ResourceType) -> bool:
    return rt.group in STRATEGIC_GROUPS


def check_addressable(name: str) -> None:
    """A name no URL could address is a bad request; the kind's own name rule is checked with the rest of the
    object (`validation`), so every fault is reported at once."""
    if name in (".", "..") or "/" in name or "%" in name:
        raise bad_request(f'"{name}" may not be a name: names may not be "." or "..", nor contain "/" or "%"')


# -- create and update ---------------------------------------------------------------------------------------------


def prepare_for_create(rt: ResourceType, obj: Obj, name: str | None = None) -> None:
    """Drop what only the server sets and check the name (`name`: the one an apply to a missing object gives)."""
    meta = obj["metadata"]
    for server_set in SERVER_SET:
        meta.pop(server_set, None)
    name = name or meta.get("name")
    if isinstance(name, str) and name:
        check_addressable(name)


def initial_status(rt: ResourceType, obj: Obj) -> Obj | None:
    """The status kube-apiserver gives an object it creates (what the client's `status` is replaced with)."""
    if rt.key == "/services":
        return {"loadBalancer": {}}
    if rt.key == "/namespaces":
        return {"phase": "Active"}
    if rt.key == "/pods":
        return {"phase": "Pending", "qosClass": _qos_class(obj)}
    if rt.key == "apps/daemonsets":
        return {"currentNumberScheduled": 0, "numberMisscheduled": 0, "desiredNumberScheduled": 0, "numberReady": 0}
    if rt.key == "apps/replicasets":
        return {"replicas": 0}
    if rt.key == "apiextensions.k8s.io/customresourcedefinitions":
        versions = objects.spec(obj).get("versions") or []
        stored = [v.get("name") for v in versions if isinstance(v, dict) and v.get("storage")]
        return {"acceptedNames": {"kind": "", "plural": ""}, "storedVersions": stored}
    if rt.key == "/nodes":
        return obj.get("status")  # a kubelet registers its node with the status it observed
    if "status" in rt.subresources:
        return {} if rt.group in fieldmanager.COMPILED_GROUPS else None
    return obj.get("status")  # without a status subresource, the status is the client's to write


def _qos_class(pod: Obj) -> str:
    containers = list(objects.spec(pod).get("containers") or [])
    resources = [c.get("resources") or {} for c in containers if isinstance(c, dict)]
    if not any(r.get("requests") or r.get("limits") for r in resources):
        return "BestEffort"
    guaranteed = all(
        all((r.get("limits") or {}).get(k) for k in ("cpu", "memory"))
        and all(
            (r.get("requests") or {}).get(k, (r.get("limits") or {}).get(k)) == r["limits"][k]
            for k in ("cpu", "memory")
        )
        for r in resources
    )
    return "Guaranteed" if guaranteed else "Burstable"


def set_initial_status(rt: ResourceType, obj: Obj) -> None:
    """The status a created object starts with: kube-apiserver ignores a status sent with a create."""
    status = initial_status(rt, obj)
    if status is None:
        obj.pop("status", None)
    else:
        obj["status"] = status


def prepare_for_update(obj: Obj, name: str) -> None:
    """The object is the one the URL names: a body naming another is refused."""
    meta = obj["metadata"]
    if meta.get("name") and meta["name"] != name:
        raise bad_request(f"the name of the object ({meta['name']}) does not match the name on the URL ({name})")
    meta["name"] = name


# -- namespace lifecycle -------------------------------------------------------------------------------------------
# As in Kubernetes, a deleted namespace is Terminating until the namespace controller (namespaces.py) has deleted
# its content and removed its "kubernetes" finalizer: objects in it can still be deleted (`kubectl delete -f` of a
# file holding a Namespace and what is in it succeeds for every object), nothing new can be created in it.


def check_not_terminating(store: Store, rt: ResourceType, namespace: str | None, name: str) -> None:
    if not rt.namespaced or not namespace:
        return
    ns = store.try_get(store.registry.by_key("/namespaces"), None, namespace)
    if ns is not None and objects.phase_of(ns) == "Terminating":
        why = f"unable to create new content in namespace {namespace} because it is being terminated"
        cause = {"reason": "NamespaceTerminating", "message": why, "field": "metadata.namespace"}
        raise forbidden_on(rt.plural, name, why, rt.group, [cause])


def marked_for_deletion(store: Store, terminator: NamespaceTerminator, rt: ResourceType, marked: Obj) -> Obj:
    """What a delete that only marked the object answers; a namespace starts terminating."""
    if rt.key != "/namespaces":
        return marked
    name = objects.name_of(marked)
    terminator.start(name)
    return store.try_get(rt, None, name) or marked


# -- delete --------------------------------------------------------------------------------------------------------


# Kinds whose DELETE answers with the deleted object rather than a Status, as in kube-apiserver (the official
# client decodes `delete_namespaced_pod` as a V1Pod, `delete_namespaced_service` as a V1Service, …).
RETURNS_DELETED_OBJECT = frozenset({
    "/pods", "/services", "/serviceaccounts", "/persistentvolumeclaims", "/persistentvolumes", "/podtemplates",
    "/resourcequotas", "/namespaces", "apiextensions.k8s.io/customresourcedefinitions",
})  # fmt: skip


def deleted_answer(rt: ResourceType, obj: Obj) -> Obj:
    return obj if rt.key in RETURNS_DELETED_OBJECT else status_success(rt, obj)


def status_success(rt: ResourceType, obj: Obj) -> Obj:
    details = {"name": objects.name_of(obj), "group": rt.group, "kind": rt.plural, "uid": objects.uid_of(obj)}
    if not rt.group:
        del details["group"]
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}


# -- scale ---------------------------------------------------------------------------------------------------------


_SCALE_META = ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")


def scale_of(obj: Obj) -> Obj:
    meta = obj["metadata"]
    spec = objects.spec(obj)
    selector = spec.get("selector") or {}
    labels = ",".join(f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items()))
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {k: meta[k] for k in _SCALE_META if k in meta},
        "spec": {"replicas": spec.get("replicas", 1)},
        "status": {"replicas": int(objects.status(obj).get("replicas", 0) or 0), "selector": labels},
    }


def scale_replicas(name: str, scale: Obj) -> int:
    replicas = objects.spec(scale).get("replicas")
    if not isinstance(replicas, int) or replicas < 0:
        raise ApiError(422, "Invalid", f'Scale "{name}" is invalid: spec.replicas: must be a non-negative int')
    return replicas
