"""A pod's status from what the kubelet knows of it: phase, conditions and container statuses.

Pure functions of the pod's runtime record (state.py), its processes' snapshots (the supervisor's ProcessStatus),
the status the pod shows now, the clock and the node's IP: nothing here touches the store, the supervisor or the
event recorder, so the golden fixtures under tests/fixtures/kubelet_status/ check it without root. What the
kubelet does with the result (write it, record the BackOff event once) is runtime.py's.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from kalab.lab.apiserver.store import Obj
from kalab.lab.controllers.kubelet.state import Container, PodRuntime
from kalab.lab.dataplane.processes import ProcessStatus, Termination
from kalab.lab.images.outcomes import Refusal, UnknownImage
from kalab.lab.images.registry import image_display, image_id, known_image

IMAGE_BACKOFF_AFTER: Final = 3.0  # seconds an unknown image shows ErrImagePull before ImagePullBackOff
CRASH_LOOP: Final = "CrashLoopBackOff"

Processes = Mapping[str, ProcessStatus | None]  # container name → its process, None while not started
Transitions = dict[str, tuple[str, str]]  # condition type → (status, lastTransitionTime)


@dataclass(frozen=True)
class PodStatus:
    phase: str
    status: Obj
    transitions: Transitions  # what the runtime record keeps for the next computation


def stamp(when: datetime | None) -> str | None:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if when else None


def qos_class(spec: Mapping[str, Any]) -> str:
    """BestEffort without any requests or limits; Guaranteed when every container limits cpu and memory and
    requests exactly that; Burstable otherwise."""
    containers = [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]
    resources = [c.get("resources") or {} for c in containers]
    if not any((r.get("requests") or r.get("limits")) for r in resources):
        return "BestEffort"
    for r in resources:
        limits, requests = r.get("limits") or {}, r.get("requests") or {}
        if any(k not in limits or str(requests.get(k, limits[k])) != str(limits[k]) for k in ("cpu", "memory")):
            return "Burstable"
    return "Guaranteed"


def phase(runtime: PodRuntime, processes: Processes) -> str:
    if runtime.init_failed:
        return "Failed"
    if runtime.init_done < len(runtime.inits):
        return "Pending"
    mains = [processes[c.name] for c in runtime.mains]
    if not mains or any(s is None for s in mains):
        return "Pending"
    if all(s is not None and s.state == "exited" for s in mains):
        return "Succeeded" if all(s is not None and s.exit_code == 0 for s in mains) else "Failed"
    return "Running"


def refusal_reason(container: Container, refusal: Refusal, clock: float) -> str:
    """ErrImagePull for an unknown image's first seconds, ImagePullBackOff after; other refusals say their own."""
    if not isinstance(refusal, UnknownImage):
        return refusal.reason
    since = container.refused_since if container.refused_since is not None else clock
    return "ErrImagePull" if clock - since < IMAGE_BACKOFF_AFTER else "ImagePullBackOff"


def waiting(runtime: PodRuntime, container: Container, clock: float) -> Obj:
    """Why a container that has not started yet waits."""
    program = container.program
    if runtime.setup_error is not None or runtime.sandbox is None or runtime.volumes is None:
        return {"reason": "ContainerCreating"}
    if isinstance(program, Refusal):
        reason = refusal_reason(container, program, clock)
        message = program.message
        if reason == "ImagePullBackOff":
            message = f'Back-off pulling image "{container.image}": {program.message}'
        return {"reason": reason, "message": message}
    if container.start_error is not None:
        return {"reason": "CreateContainerError", "message": container.start_error}
    if container.init or runtime.init_done < len(runtime.inits):
        return {"reason": "PodInitializing"}
    return {"reason": "ContainerCreating"}


def container_id(runtime: PodRuntime, container: Container, run: int) -> str:
    digest = hashlib.sha256(f"{runtime.uid}/{container.name}/{run}".encode()).hexdigest()
    return f"cri-o://{digest}"


def terminated(end: Termination, container_id: str) -> Obj:
    state: Obj = {
        "exitCode": end.exit_code,
        "reason": end.reason,
        "startedAt": stamp(end.started_at),
        "finishedAt": stamp(end.finished_at),
        "containerID": container_id,
    }
    if end.signal is not None:
        state["signal"] = end.signal
    return state


def container_status(runtime: PodRuntime, container: Container, process: ProcessStatus | None, clock: float) -> Obj:
    known = known_image(container.image) is not None
    result: Obj = {
        "name": container.name,
        "image": image_display(container.image),
        "imageID": image_id(container.image) if known else "",
        "ready": False,
        "restartCount": 0,
        "started": False,
        "state": {},
        "lastState": {},
    }
    if process is None:
        result["state"] = {"waiting": waiting(runtime, container, clock)}
        return result
    current = container_id(runtime, container, process.restarts)
    result["restartCount"] = process.restarts
    result["containerID"] = current
    if process.state == "running":
        result["state"] = {"running": {"startedAt": stamp(process.started_at)}}
        result["started"] = True
        result["ready"] = not container.init
    elif process.state == "waiting":
        message = (
            f"back-off restarting failed container {container.name} in pod "
            f"{runtime.name}_{runtime.namespace}({runtime.uid})"
        )
        result["state"] = {"waiting": {"reason": CRASH_LOOP, "message": message}}
    elif process.last_termination is not None:
        result["state"] = {"terminated": terminated(process.last_termination, current)}
        result["ready"] = container.init and process.exit_code == 0
    if process.state != "exited" and process.last_termination is not None and process.restarts > 0:
        previous = container_id(runtime, container, process.restarts - 1)
        result["lastState"] = {"terminated": terminated(process.last_termination, previous)}
    return result


def pod_status(
    runtime: PodRuntime,
    processes: Processes,
    old: Mapping[str, Any],
    spec: Mapping[str, Any],
    host_ip: str,
    now: str,
    clock: float,
) -> PodStatus:
    """The whole status subresource; `now` (RFC 3339) stamps conditions whose status changed, `clock` (monotonic
    seconds) times the image pull backoff."""
    transitions: Transitions = dict(runtime.transitions)

    def condition(type_: str, ok: bool, reason: str = "", message: str = "") -> Obj:
        status = "True" if ok else "False"
        previous = transitions.get(type_)
        if previous is None or previous[0] != status:
            transitions[type_] = (status, now)
        found: Obj = {
            "type": type_,
            "status": status,
            "lastProbeTime": None,
            "lastTransitionTime": transitions[type_][1],
        }
        if not ok and reason:
            found["reason"], found["message"] = reason, message
        return found

    current = phase(runtime, processes)
    inits = [container_status(runtime, c, processes[c.name], clock) for c in runtime.inits]
    mains = sorted(
        (container_status(runtime, c, processes[c.name], clock) for c in runtime.mains), key=lambda s: str(s["name"])
    )
    pending_inits = [c.name for c in runtime.inits[runtime.init_done :]]
    unready = [s["name"] for s in mains if not s["ready"]]
    done = current in ("Succeeded", "Failed")
    not_ready = (
        ("PodCompleted", "")
        if done
        else ("ContainersNotReady", f"containers with unready status: [{' '.join(unready)}]")
    )
    scheduled = next((c for c in old.get("conditions") or [] if c.get("type") == "PodScheduled"), None)
    conditions = [
        condition(
            "Initialized",
            not pending_inits or done,
            "ContainersNotInitialized",
            f"containers with incomplete status: [{' '.join(pending_inits)}]",
        ),
        condition("Ready", not unready and not done, *not_ready),
        condition("ContainersReady", not unready and not done, *not_ready),
        scheduled if scheduled and scheduled.get("status") == "True" else condition("PodScheduled", True),
    ]
    status: Obj = {"phase": current, "conditions": conditions, "hostIP": host_ip, "hostIPs": [{"ip": host_ip}]}
    if runtime.sandbox is not None:
        status["podIP"] = runtime.sandbox.ip
        status["podIPs"] = [{"ip": runtime.sandbox.ip}]
    status["startTime"] = runtime.start_time
    if inits:
        status["initContainerStatuses"] = inits
    status["containerStatuses"] = mains
    status["qosClass"] = qos_class(spec)
    return PodStatus(current, status, transitions)
