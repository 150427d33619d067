"""Security context constraints: which pods may be created, and under which SCC, as OpenShift decides it.

A pod is admitted when one SCC its service account may use allows everything the pod asks for (privileged
containers, the host's network/PID/IPC namespaces, host ports, host path volumes, a root or out-of-range UID, added
capabilities). The account may use an SCC when it is named in the SCC's `users`, one of its groups is in `groups`,
or RBAC grants it the verb `use` on that SCC (e.g. a binding to ClusterRole `system:openshift:scc:privileged`):
these are the two things `oc adm policy add-scc-to-user privileged -z default -n <ns>` does on older and newer
OpenShift 4.x. The first admitting SCC in OpenShift's order (priority, then the most restrictive, then name) is
recorded in the pod's `openshift.io/scc` annotation; when none admits, the create fails with 403 and OpenShift's
"unable to validate against any security context constraint" message, which the DaemonSet controller turns into
FailedCreate events.

As on OpenShift, an SCC admits a pod when the pod's service account or the user creating the pod may use it: a
cluster admin's privileged pod (`kubectl debug node/…`, `oc debug node/…`) is admitted, while the same pod made by
a controller (a DaemonSet's pods) or by an impersonated user without the grant is checked against what the service
account may use. The API server says who sends a request (kalab.lab.apiserver.access); the lab's own controllers
write to the store directly and so are never taken for the admin.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kalab.lab.apiserver import access
from kalab.lab.apiserver.access import MASTERS, UserInfo
from kalab.lab.apiserver.errors import forbidden
from kalab.lab.apiserver.resources import ResourceType
from kalab.lab.apiserver.store import Obj, Operation, Store
from kalab.lab.context import LabContext
from kalab.model import objects

SCC_ANNOTATION = "openshift.io/scc"
REQUIRED_SCC_ANNOTATION = "openshift.io/required-scc"  # newer OpenShift: the pod names the only SCC it accepts
UID_RANGE_ANNOTATION = "openshift.io/sa.scc.uid-range"
SCC_GROUP = "security.openshift.io"
SCC_RESOURCE = "securitycontextconstraints"
NOT_USABLE = "Forbidden: not usable by user or serviceaccount"


def service_account(pod: Mapping[str, Any]) -> str:
    spec = objects.spec(pod)
    return str(spec.get("serviceAccountName") or spec.get("serviceAccount") or "default")


# ------------------------------------------------------------------------------------------- who may use what


def usable(scc: Mapping[str, Any], user: UserInfo, rules: Iterable[Mapping[str, Any]]) -> bool:
    """Named in the SCC's users, one of its groups in the SCC's groups, or RBAC's `use` on it."""
    name = objects.name_of(scc)
    if user.username in (scc.get("users") or []):
        return True
    if set(user.groups) & set(scc.get("groups") or []):
        return True
    use = access.Attributes("use", SCC_GROUP, SCC_RESOURCE, name=name)
    return MASTERS in user.groups or any(access.rule_allows(rule, use) for rule in rules)


# ------------------------------------------------------------------------------------------- what a pod asks for


def _restrictiveness(scc: Mapping[str, Any]) -> int:
    """Lower is more restrictive. Our own weights; only the order they produce matters."""
    volumes = scc.get("volumes") or []
    caps = scc.get("allowedCapabilities") or []
    score = 1000 if scc.get("allowPrivilegedContainer") else 0
    if "*" in volumes:
        score += 500
    elif scc.get("allowHostDirVolumePlugin") and "hostPath" in volumes:
        score += 300
    score += 100 * sum(bool(scc.get(f)) for f in ("allowHostNetwork", "allowHostPorts", "allowHostPID", "allowHostIPC"))
    score += {"RunAsAny": 50, "MustRunAsNonRoot": 20}.get((scc.get("runAsUser") or {}).get("type", ""), 0)
    score += 40 if "*" in caps else 5 * len(caps)
    return score + (1 if scc.get("allowPrivilegeEscalation", True) else 0)


def ordered(sccs: Iterable[Obj]) -> list[Obj]:
    """OpenShift's order of trying SCCs: highest priority first, then the most restrictive, then by name."""
    return sorted(sccs, key=lambda s: (-(s.get("priority") or 0), _restrictiveness(s), objects.name_of(s)))


def uid_range(namespace: Obj | None, name: str) -> tuple[int, int]:
    """The namespace's UID block (`1000640000/10000` in its annotation), or a stable made-up one without it."""
    text = objects.annotations_of(namespace).get(UID_RANGE_ANNOTATION, "")
    start, _, size = str(text).partition("/")
    if start.isdigit() and size.isdigit() and int(size) > 0:
        return int(start), int(start) + int(size) - 1
    # OpenShift hands each namespace its own block of 10000 above 1000000000; derive one from the name.
    block = int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big") % 10000
    first = 1_000_000_000 + block * 10_000
    return first, first + 9_999


def _containers(spec: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    for field in ("initContainers", "containers"):
        for index, container in enumerate(spec.get(field) or []):
            yield f"spec.{field}[{index}]", container


def _volume_type(volume: Mapping[str, Any]) -> str:
    return next((k for k in volume if k != "name"), "")


def _run_as_user_problem(scc: Mapping[str, Any], uid: int, uids: tuple[int, int]) -> str | None:
    strategy = scc.get("runAsUser") or {}
    kind = strategy.get("type", "RunAsAny")
    if kind == "MustRunAsRange" and not uids[0] <= uid <= uids[1]:
        return f"must be in the ranges: [{uids[0]}, {uids[1]}]"
    if kind == "MustRunAsNonRoot" and uid == 0:
        return "running with the root UID is forbidden"
    if kind == "MustRunAs" and uid != strategy.get("uid"):
        return f"must be: {strategy.get('uid')}"
    return None


def violations(scc: Mapping[str, Any], pod: Mapping[str, Any], uids: tuple[int, int]) -> list[str]:
    """Everything `pod` asks for that `scc` does not allow, in OpenShift's field-error wording."""
    spec = objects.spec(pod)
    found: list[str] = []
    for field, flag, what in (
        ("hostNetwork", "allowHostNetwork", "Host network"),
        ("hostPID", "allowHostPID", "Host PID"),
        ("hostIPC", "allowHostIPC", "Host IPC"),
    ):
        if spec.get(field) and not scc.get(flag):
            found.append(f".spec.securityContext.{field}: Invalid value: true: {what} is not allowed to be used")
    allowed_volumes = scc.get("volumes") or []
    for index, volume in enumerate(spec.get("volumes") or []):
        kind = _volume_type(volume)
        host_dir_refused = kind == "hostPath" and not scc.get("allowHostDirVolumePlugin")
        if host_dir_refused or ("*" not in allowed_volumes and kind not in allowed_volumes):
            found.append(f'spec.volumes[{index}]: Invalid value: "{kind}": {kind} volumes are not allowed to be used')
    pod_user = (spec.get("securityContext") or {}).get("runAsUser")
    allowed_caps = set(scc.get("allowedCapabilities") or []) | set(scc.get("defaultAddCapabilities") or [])
    for path, container in _containers(spec):
        context = container.get("securityContext") or {}
        where = f"{path}.securityContext"
        if context.get("privileged") and not scc.get("allowPrivilegedContainer"):
            found.append(f"{where}.privileged: Invalid value: true: Privileged containers are not allowed")
        if context.get("allowPrivilegeEscalation") and not scc.get("allowPrivilegeEscalation", True):
            found.append(
                f"{where}.allowPrivilegeEscalation: Invalid value: true: "
                "Allowing privilege escalation for containers is not allowed"
            )
        for cap in (context.get("capabilities") or {}).get("add") or []:
            if "*" not in allowed_caps and cap not in allowed_caps:
                found.append(f'{where}.capabilities.add: Invalid value: "{cap}": capability may not be added')
        uid = context.get("runAsUser", pod_user)
        if isinstance(uid, int) and (problem := _run_as_user_problem(scc, uid, uids)):
            found.append(f"{where}.runAsUser: Invalid value: {uid}: {problem}")
        if not scc.get("allowHostPorts"):
            for index, port in enumerate(container.get("ports") or []):
                if port.get("hostPort"):
                    found.append(
                        f"{path}.ports[{index}].hostPort: Invalid value: {port['hostPort']}: "
                        "Host ports are not allowed to be used"
                    )
    return found


# ------------------------------------------------------------------------------------------- the decision


@dataclass(frozen=True)
class Decision:
    """The SCC that admits a pod, or (scc None) every provider's reason for refusing it."""

    scc: str | None
    reasons: tuple[str, ...] = ()


def decide(store: Store, pod: Mapping[str, Any], requester: UserInfo | None = None) -> Decision:
    """The first SCC (in OpenShift's order) that the pod's service account or `requester` may use and that allows
    everything the pod asks for."""
    meta = objects.meta(pod)
    namespace = str(meta.get("namespace") or "default")
    account = access.service_account_user(namespace, service_account(pod))
    subjects = [(account, access.granted_rules(store, account, namespace))]
    if requester is not None:
        subjects.append((requester, access.granted_rules(store, requester, namespace)))
    registry = store.registry
    sccs = ordered(store.list(registry.by_key(f"{SCC_GROUP}/{SCC_RESOURCE}"))[0])
    required = (meta.get("annotations") or {}).get(REQUIRED_SCC_ANNOTATION)
    if required:
        sccs = [s for s in sccs if objects.name_of(s) == required]
    uids = uid_range(store.try_get(registry.by_key("/namespaces"), None, namespace), namespace)
    reasons: list[str] = []
    for scc in sccs:
        name = objects.name_of(scc)
        if not any(usable(scc, user, rules) for user, rules in subjects):
            reasons.append(f'provider "{name}": {NOT_USABLE}')
            continue
        problems = violations(scc, pod, uids)
        if not problems:
            return Decision(name)
        reasons.append(f"provider {name}: {problems[0]}")
        reasons.extend(problems[1:])
    return Decision(None, tuple(reasons))


def _display_name(meta: Mapping[str, Any]) -> str:
    # The API server picks a generated name after admission, so OpenShift's message shows the prefix
    # ("keepalivedgroup-workers-"); the store has already filled in the 5 random characters.
    name, prefix = str(meta.get("name") or ""), str(meta.get("generateName") or "")
    if prefix and name.startswith(prefix) and len(name) == len(prefix) + 5:
        return prefix
    return name


def scc_error_message(pod: Mapping[str, Any], reasons: Sequence[str]) -> str:
    """OpenShift's refusal, e.g. `pods "x-" is forbidden: unable to validate against any security context
    constraint: [provider "anyuid": Forbidden: not usable by user or serviceaccount, …]`."""
    name = _display_name(objects.meta(pod))
    if not reasons:
        return f'pods "{name}" is forbidden: no providers available to validate pod request'
    return (
        f'pods "{name}" is forbidden: unable to validate against any security context constraint: '
        f"[{', '.join(reasons)}]"
    )


def admit_pod(store: Store, pod: Obj) -> str:
    """Default the service account, pick the SCC and annotate `pod` with it; ApiError 403 when none admits."""
    spec = pod.setdefault("spec", {})
    # OpenShift's ServiceAccount admission runs first and fills both fields; the lab folds that in here.
    spec["serviceAccountName"] = service_account(pod)
    spec["serviceAccount"] = spec["serviceAccountName"]
    decision = decide(store, pod, access.requester())
    if decision.scc is None:
        raise forbidden(scc_error_message(pod, decision.reasons))
    pod.setdefault("metadata", {}).setdefault("annotations", {})[SCC_ANNOTATION] = decision.scc
    return decision.scc


def install_scc_admission(ctx: LabContext) -> None:
    """Check every new pod against the SCCs (pods are validated at creation only, as in OpenShift)."""
    store = ctx.store

    def hook(op: Operation, rt: ResourceType, obj: Obj, old: Obj | None) -> None:
        # DELETE hooks run under the store's lock, so nothing here may touch the store for them.
        if op != "CREATE" or rt.key != "/pods":
            return
        admit_pod(store, obj)

    store.add_admission(hook)
