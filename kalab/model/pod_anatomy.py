"""What makes a keepalived pod special, as a table a trainee can read row by row.

Input is a Pod as a plain dict: parsed YAML/JSON or the kubernetes client's ``sanitize_for_serialization``
(camelCase keys) or its ``to_dict()`` (snake_case keys). Each field is looked up under both spellings, so
user-chosen keys inside maps (labels, annotations, nodeSelector) are never rewritten.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Final

import pandas as pd

from kalab.model.errors import KalabError

COLUMNS: Final = ("aspect", "container", "detail", "why_it_matters")
POD: Final = ""  # the container column for rows about the whole pod
EMPTY_LABEL: Final = '""'  # how `oc label node N key=""` writes an empty label value
SCC_ANNOTATION: Final = "openshift.io/scc"
Row = tuple[str, str, str, str]

# Why each known program matters; keyed by the basename of what the container finally runs.
_PROGRAM_WHY: Final = {
    "keepalived": "keepalived itself: --config-id=${POD_NAME} makes the per-pod '@<pod>' lines of the shared "
    "config apply to this pod only, --dont-fork keeps it the container's main process.",
    "keepalived_exporter": "the exporter: it signals keepalived to dump its state to /tmp and serves the "
    "counters on the node's IP, port 9650, path /metrics.",
    "notify.sh": "copies the operator's rendered config into place (and, with interfaceFromIP, picks the "
    "interface); as the reloader it SIGHUPs keepalived when the config changes.",
}
_SHELLS: Final = {"bash", "sh", "/bin/bash", "/bin/sh", "/usr/bin/bash", "/usr/bin/sh"}


def _snake(camel: str) -> str:
    # hostIP → host_ip, emptyDir → empty_dir: the kubernetes client's to_dict() spelling.
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", camel).lower()


def _get(obj: Any, key: str) -> Any:
    """obj[key] under its camelCase or snake_case spelling; None when absent or obj is not a mapping."""
    if not isinstance(obj, Mapping):
        return None
    value = obj.get(key)
    return obj.get(_snake(key)) if value is None else value


def _items(obj: Any, key: str) -> list[Any]:
    value = _get(obj, key)
    return list(value) if isinstance(value, Sequence) and not isinstance(value, str) else []


def _pod_spec(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    kind = _get(pod, "kind")
    spec = _get(pod, "spec")
    if (kind not in (None, "Pod")) or not isinstance(spec, Mapping):
        what = f"a {kind}" if kind not in (None, "Pod") else "an object without a spec"
        raise KalabError(f"Expected a Pod but got {what}; pass one pod, e.g. from `oc get pod NAME -o yaml`.")
    return spec


def command_line(container: Mapping[str, Any]) -> str:
    """What the container really runs: command + args, or the script of `bash -c "exec ..."` without the shell."""
    parts = [str(p) for p in _items(container, "command") + _items(container, "args")]
    if len(parts) >= 3 and parts[0] in _SHELLS and parts[1] == "-c":
        script = " ".join(parts[2].split())  # YAML folded scalars leave newlines and a trailing newline
        return script.removeprefix("exec ")
    return " ".join(p if p and not any(c.isspace() for c in p) else shlex.quote(p) for p in parts)


def _program(line: str) -> str:
    first = line.split()[0] if line.split() else ""
    return first.rsplit("/", 1)[-1]


# Why each aspect matters; rows whose reason depends on the container or volume compute it instead.
_WHY: Final = {
    "hostNetwork": "keepalived must add VIPs to the node's own interface and send VRRP adverts and gratuitous "
    "ARPs on the node's segment; the pod's IP is the node's IP.",
    "shareProcessNamespace": "the reloader and the exporter must see keepalived's PID to signal it (SIGHUP to "
    "reload, signal 36 / SIGUSR1 / SIGUSR2 to dump its state).",
    "automountServiceAccountToken": "nothing in the pod talks to the API, so a privileged, host-network pod "
    "carries no token that could be abused.",
    "scc": "the SCC that admitted the pod; without the privileged SCC granted to the namespace's default service "
    "account the DaemonSet creates no pods at all (FailedCreate events).",
    "nodeSelector": "only nodes with this label run keepalived, so only they can hold the VIPs: label the nodes "
    "first (oc label node ...).",
    "toleration": "tolerates every taint: keepalived runs on tainted nodes (masters, not-ready, under pressure) "
    "as long as they match the selector.",
    "tolerations": "the taints a DaemonSet pod tolerates by default, so node trouble does not evict the VIP holder.",
    "initContainer": "runs to completion before keepalived starts: it puts the operator's rendered "
    "keepalived.conf in place.",
    "env fieldRef": "the downward API hands the pod its own identity (here for keepalived's --config-id).",
    "privileged": "full access to the host's network stack: add and remove VIPs, open raw VRRP sockets, load "
    "kernel modules, signal other processes.",
    "runAsUser": "runs as root, to write the shared config and signal keepalived.",
    "capabilities": "the kernel privileges it asks for instead of (or besides) privileged mode.",
    "hostPort": "opened on the node's IP: Prometheus scrapes node-IP:9650, and only one such pod fits on a node.",
    "port": "with hostNetwork this port is opened on the node's IP.",
    "hostPath volume": "a directory of the host itself: /lib/modules lets keepalived load kernel modules (ip_vs).",
    "configMap volume": "the operator renders keepalived.conf into this ConfigMap; the reloader watches the copy.",
}


def _row(aspect: str, container: str, detail: str, why: str | None = None) -> Row:
    return (aspect, container, detail, _WHY[aspect] if why is None else why)


def _pod_rows(pod: Mapping[str, Any], spec: Mapping[str, Any]) -> Iterator[Row]:
    if _get(spec, "hostNetwork") is True:
        yield _row("hostNetwork", POD, "true")
    if _get(spec, "shareProcessNamespace") is True:
        yield _row("shareProcessNamespace", POD, "true")
    if _get(spec, "automountServiceAccountToken") is False:
        yield _row("automountServiceAccountToken", POD, "false")
    annotations = _get(_get(pod, "metadata"), "annotations") or {}
    if SCC_ANNOTATION in annotations:
        yield _row("scc", POD, f"{SCC_ANNOTATION}: {annotations[SCC_ANNOTATION]}")
    yield from _placement_rows(spec)


def _placement_rows(spec: Mapping[str, Any]) -> Iterator[Row]:
    selector = _get(spec, "nodeSelector") or {}
    for key, value in sorted(selector.items()):
        yield _row("nodeSelector", POD, f"{key}={value or EMPTY_LABEL}")
    tolerations = [t for t in _items(spec, "tolerations") if isinstance(t, Mapping)]
    blanket = [t for t in tolerations if _get(t, "operator") == "Exists" and not _get(t, "key")]
    if blanket:
        yield _row("toleration", POD, "operator: Exists (no key)")
    keyed = [t for t in tolerations if t not in blanket]
    if keyed:
        yield _row("tolerations", POD, ", ".join(f"{_get(t, 'key')}:{_get(t, 'effect') or 'any'}" for t in keyed))


def _container_rows(container: Mapping[str, Any], init: bool) -> Iterator[Row]:
    name = str(_get(container, "name") or "?")
    line = command_line(container)
    if init:
        yield _row("initContainer", name, line)
    else:
        why = _PROGRAM_WHY.get(_program(line), "what this container runs.")
        if _is_exec_script(container):
            why += " The shell execs it, so it receives the container's SIGTERM directly."
        yield _row("command", name, line, why)
    yield from _security_rows(name, _get(container, "securityContext") or {})
    yield from _port_rows(name, container)
    for env in _items(container, "env"):
        path = _get(_get(_get(env, "valueFrom"), "fieldRef"), "fieldPath")
        if path:
            yield _row("env fieldRef", name, f"{_get(env, 'name')} ← {path}")


def _is_exec_script(container: Mapping[str, Any]) -> bool:
    parts = [str(p) for p in _items(container, "command") + _items(container, "args")]
    return len(parts) >= 3 and parts[0] in _SHELLS and parts[2].lstrip().startswith("exec ")


def _security_rows(name: str, security: Mapping[str, Any]) -> Iterator[Row]:
    if _get(security, "privileged") is True:
        yield _row("privileged", name, "true")
    if _get(security, "runAsUser") == 0:
        yield _row("runAsUser", name, "0")
    added = _items(_get(security, "capabilities"), "add")
    if added:
        yield _row("capabilities", name, ", ".join(map(str, added)))


def _port_rows(name: str, container: Mapping[str, Any]) -> Iterator[Row]:
    for port in _items(container, "ports"):
        number, host = _get(port, "containerPort"), _get(port, "hostPort")
        label = f"{_get(port, 'name') or 'port'} {number}/{_get(port, 'protocol') or 'TCP'}"
        if host is not None:
            yield _row("hostPort", name, f"{label}, hostPort {host}")
        else:
            yield _row("port", name, label)


def _volume_rows(spec: Mapping[str, Any]) -> Iterator[Row]:
    mounts = _mounts(spec)
    for volume in _items(spec, "volumes"):
        vname = str(_get(volume, "name"))
        users = mounts.get(vname, [])
        where = "mounted by " + ("; ".join(f"{c} at {p}" for c, p in users) or "no container")
        host_path, empty_dir, config_map = (_get(volume, k) for k in ("hostPath", "emptyDir", "configMap"))
        if host_path is not None:
            yield _row("hostPath volume", POD, f"{vname}: {_get(host_path, 'path')} ({where})")
        elif empty_dir is not None:
            medium = _get(empty_dir, "medium")
            tmpfs = f", medium {medium}" if medium else ""
            yield _row("emptyDir volume", POD, f"{vname}{tmpfs} ({where})", _empty_dir_why(medium, users))
        elif config_map is not None:
            yield _row("configMap volume", POD, f"{vname}: ConfigMap {_get(config_map, 'name')} ({where})")


def _empty_dir_why(medium: Any, mounts: list[tuple[str, str]]) -> str:
    if any(p == "/tmp" for _, p in mounts):
        return "keepalived writes its dumps (keepalived.json/.data/.stats) to /tmp; the exporter reads them here."
    if medium == "Memory":
        return "a tmpfs shared between containers: keepalived's pid file, so the reloader knows whom to SIGHUP."
    return "a scratch directory shared between the pod's containers, gone with the pod."


def _mounts(spec: Mapping[str, Any]) -> dict[str, list[tuple[str, str]]]:
    found: dict[str, list[tuple[str, str]]] = {}
    for container in _items(spec, "initContainers") + _items(spec, "containers"):
        for mount in _items(container, "volumeMounts"):
            entry = (str(_get(container, "name")), str(_get(mount, "mountPath")))
            found.setdefault(str(_get(mount, "name")), []).append(entry)
    return found


def anatomy_rows(pod: Mapping[str, Any]) -> list[Row]:
    spec = _pod_spec(pod)
    rows = list(_pod_rows(pod, spec))
    for container in _items(spec, "initContainers"):
        rows += _container_rows(container, init=True)
    for container in _items(spec, "containers"):
        rows += _container_rows(container, init=False)
    rows += _volume_rows(spec)
    return rows


def pod_anatomy(pod: Mapping[str, Any]) -> pd.DataFrame:
    """One row per special trait: aspect, container ("" for the whole pod), detail, why_it_matters."""
    return pd.DataFrame(anatomy_rows(pod), columns=list(COLUMNS))


def pod_summary(pod: Mapping[str, Any]) -> dict[str, object]:
    """Where the pod runs and whether it is healthy, in one line's worth of fields."""
    spec, status, metadata = _pod_spec(pod), _get(pod, "status") or {}, _get(pod, "metadata") or {}
    statuses = [s for s in _items(status, "containerStatuses") if isinstance(s, Mapping)]
    ready = sum(1 for s in statuses if _get(s, "ready") is True)
    return {
        "name": _get(metadata, "name"),
        "namespace": _get(metadata, "namespace"),
        "node": _get(spec, "nodeName"),
        "hostIP": _get(status, "hostIP"),
        "podIP": _get(status, "podIP"),
        "phase": _get(status, "phase"),
        "ready": f"{ready}/{len(_items(spec, 'containers'))}",
        "restarts": sum(int(_get(s, "restartCount") or 0) for s in statuses),
    }
