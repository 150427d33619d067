"""The lab's kubelet: runs the pods bound to lab nodes with real processes, and keeps their status true.

For each pod with `spec.nodeName` on a lab node it does what a node's kubelet and container runtime do:
1. a sandbox — hostNetwork pods use the node's namespace (podIP = node IP), others get their own (sandbox.py);
2. volumes — directories under the pod's own directory (registry.prepare_volumes); configMap/secret volumes are
   re-synced on every tick and on every change of their source, as the kubelet's periodic sync does, which is how
   a new keepalived.conf reaches the config-reloader;
3. init containers one after the other, each to completion, then every container, each started by the supervisor
   as `<ns>/<pod>/<container>` with the pod's restartPolicy; what each image runs comes from registry.program_for,
   and an unknown image is never executed: the container waits with ErrImagePull/ImagePullBackOff;
4. status, recomputed from the supervisor every half second while the pod lives: phase, conditions, container
   statuses with restart counts and last states, podIP/hostIP, startTime, qosClass.
A deleted pod's processes get SIGTERM (SIGKILL after the grace period), its sandbox and directory are removed.

It is also the API server's PodHooks: `pods/log` from the supervisor's log files, `pods/exec` as
`ip netns exec <pod's namespace> <command>`, the pod proxy as an HTTP request made with curl from inside the
pod's node namespace, and `pods/portforward` as a socket connected from inside the pod's namespace
(netns_socket.py) — lab addresses are never contacted from the host namespace.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import hashlib
import logging
import os
import pty
import queue
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import termios
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any, Final

from kalab.lab.apiserver.errors import ApiError, bad_request, not_found
from kalab.lab.apiserver.hooks import ExecRequest, ExecSession, LogRequest, ProxyResponse
from kalab.lab.apiserver.store import Event, Obj, now_rfc3339
from kalab.lab.context import LabContext
from kalab.lab.controllers.attach import LogSession, follow_raw
from kalab.lab.controllers.base import Controller, object_key, split_key
from kalab.lab.dataplane.entry import HERE
from kalab.lab.dataplane.netns_socket import connect_in
from kalab.lab.dataplane.sandbox import Sandbox, create_sandbox, delete_sandbox, host_network_sandbox
from kalab.lab.dataplane.supervisor import ProcessSpec, ProcessStatus, RestartPolicy, Termination
from kalab.lab.images.node_debug import stdin_fifo, terminal_output, typescript
from kalab.lab.images.registry import (
    BASE_PATH,
    ContainerConfigError,
    PodVolumes,
    Program,
    Refusal,
    UnknownImage,
    container_env,
    image_display,
    image_id,
    known_image,
    prepare_volumes,
    program_for,
    sync_projected,
)
from kalab.model import objects
from kalab.model.errors import KalabError

_log = logging.getLogger(__name__)

STATUS_POLL: Final = 0.5  # seconds between status refreshes of a live pod
IMAGE_BACKOFF_AFTER: Final = 3.0  # seconds an unknown image shows ErrImagePull before ImagePullBackOff
MAX_GRACE: Final = 30.0
LOG_POLL: Final = 0.1  # seconds between looks at a followed log file
PROXY_TIMEOUT: Final = 30.0
_HOP_BY_HOP: Final = frozenset(
    {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer", "trailers",
     "transfer-encoding", "upgrade", "content-length", "host", "expect", "authorization"}
)  # fmt: skip
_TOKEN: Final = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


def _stamp(when: datetime | None) -> str | None:
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


# ---------------------------------------------------------------------------------------------------------------
# What the kubelet remembers about each pod it runs


@dataclass
class _Container:
    spec: dict[str, Any]
    init: bool
    process: str  # the supervisor's name: <ns>/<pod>/<container>
    log_path: Path
    program: Program | Refusal | None = None
    started: bool = False
    start_error: str | None = None
    refused_since: float | None = None
    reported: str | None = None  # the last waiting reason an event was recorded for

    @property
    def name(self) -> str:
        return str(self.spec.get("name"))

    @property
    def image(self) -> str:
        return str(self.spec.get("image") or "")


@dataclass
class _PodRuntime:
    key: str
    namespace: str
    name: str
    uid: str
    node: str
    host_network: bool
    root: Path
    grace: float
    restart_policy: RestartPolicy
    start_time: str
    ref: Obj  # enough of the pod to record events after it is gone
    containers: list[_Container]
    sources: set[tuple[str, str]]  # (kind, name) of the ConfigMaps and Secrets it uses
    sandbox: Sandbox | None = None
    volumes: PodVolumes | None = None
    setup_error: str | None = None
    init_done: int = 0
    init_failed: bool = False
    transitions: dict[str, tuple[str, str]] = field(default_factory=dict)
    events: set[tuple[str, str]] = field(default_factory=set)

    @property
    def inits(self) -> list[_Container]:
        return [c for c in self.containers if c.init]

    @property
    def mains(self) -> list[_Container]:
        return [c for c in self.containers if not c.init]

    def container(self, name: str) -> _Container | None:
        return next((c for c in self.containers if c.name == name), None)


def _sources(spec: Mapping[str, Any]) -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for volume in spec.get("volumes") or []:
        if "configMap" in volume:
            found.add(("ConfigMap", str((volume["configMap"] or {}).get("name"))))
        if "secret" in volume:
            found.add(("Secret", str((volume["secret"] or {}).get("secretName"))))
    for container in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
        for item in container.get("env") or []:
            source = item.get("valueFrom") or {}
            if "configMapKeyRef" in source:
                found.add(("ConfigMap", str(source["configMapKeyRef"].get("name"))))
            if "secretKeyRef" in source:
                found.add(("Secret", str(source["secretKeyRef"].get("name"))))
        for item in container.get("envFrom") or []:
            if "configMapRef" in item:
                found.add(("ConfigMap", str(item["configMapRef"].get("name"))))
            if "secretRef" in item:
                found.add(("Secret", str(item["secretRef"].get("name"))))
    return found


# ---------------------------------------------------------------------------------------------------------------
# The kubelet


class Kubelet(Controller):
    """Runs the pods bound to the lab's nodes (all of the topology's, or `nodes`); also the API's PodHooks."""

    name = "kubelet"

    def __init__(self, ctx: LabContext, nodes: Sequence[str] | None = None) -> None:
        super().__init__(ctx)
        if ctx.topology is None or ctx.supervisor is None:
            raise KalabError(
                "The kubelet runs pods on the data plane; give the lab context a topology and a supervisor."
            )
        self.topology = ctx.topology
        self.supervisor = ctx.supervisor
        self.nodes = frozenset(nodes if nodes is not None else self.topology.node_names)
        self.root = ctx.state_dir / "kubelet"
        self.pods_rt = ctx.rt("/pods")
        self._lock = threading.RLock()
        self._runtimes: dict[str, _PodRuntime] = {}
        self._sessions: list[tuple[str, _ExecProcess]] = []
        self.watches = {
            "/pods": object_key,
            "/configmaps": self._users_of("ConfigMap"),
            "/secrets": self._users_of("Secret"),
        }

    def _users_of(self, kind: str) -> Callable[[Event], list[str]]:
        def keys(event: Event) -> list[str]:
            meta = objects.meta(event.object)
            wanted = (kind, str(meta.get("name")))
            with self._lock:
                return [
                    key
                    for key, rt in self._runtimes.items()
                    if rt.namespace == meta.get("namespace") and wanted in rt.sources
                ]

        return keys

    def _lookup(self, kind: str, namespace: str, name: str) -> Obj | None:
        rt = self.ctx.rt("/configmaps" if kind == "ConfigMap" else "/secrets")
        return self.ctx.store.try_get(rt, namespace, name)

    # -- lifecycle ---------------------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop reconciling, then stop every pod's processes and remove their sandboxes and directories."""
        self.stop()
        with self._lock:
            runtimes = list(self._runtimes.values())
        for runtime in runtimes:
            self._teardown(runtime)
        with self._lock:
            sessions, self._sessions = self._sessions, []
        for _, session in sessions:
            session.kill()

    def running_pods(self) -> list[str]:
        """`namespace/name` of every pod this kubelet runs (for status and tests)."""
        with self._lock:
            return sorted(self._runtimes)

    # -- reconcile ---------------------------------------------------------------------------------------------

    def reconcile(self, key: str) -> float | None:
        namespace, name = split_key(key)
        pod = self.ctx.store.try_get(self.pods_rt, namespace, name)
        with self._lock:
            runtime = self._runtimes.get(key)
        spec = objects.spec(pod)
        if runtime is not None and (
            pod is None or pod["metadata"].get("uid") != runtime.uid or spec.get("nodeName") != runtime.node
        ):
            self._teardown(runtime)
            runtime = None
        if pod is None or spec.get("nodeName") not in self.nodes:
            return None
        if runtime is None:
            runtime = self._admit(pod)
        self._sync(runtime, pod)
        phase = self._publish(runtime, pod)
        return None if phase in ("Succeeded", "Failed") else STATUS_POLL

    def _admit(self, pod: Obj) -> _PodRuntime:
        meta, spec = pod["metadata"], objects.spec(pod)
        namespace, name, uid = str(meta.get("namespace")), str(meta.get("name")), str(meta.get("uid"))
        root = self.root / "pods" / f"{namespace}_{name}_{uid}"
        policies: dict[str, RestartPolicy] = {"Always": "Always", "OnFailure": "OnFailure", "Never": "Never"}
        policy = policies.get(str(spec.get("restartPolicy")), "Always")
        containers = [
            _Container(c, init, f"{namespace}/{name}/{c.get('name')}", root / "logs" / f"{c.get('name')}.log")
            for init, group in ((True, spec.get("initContainers") or []), (False, spec.get("containers") or []))
            for c in group
        ]
        runtime = _PodRuntime(
            key=f"{namespace}/{name}",
            namespace=namespace,
            name=name,
            uid=uid,
            node=str(spec.get("nodeName")),
            host_network=bool(spec.get("hostNetwork")),
            root=root,
            grace=min(
                MAX_GRACE,
                float(grace) if (grace := spec.get("terminationGracePeriodSeconds")) is not None else MAX_GRACE,
            ),
            restart_policy=policy,
            start_time=now_rfc3339(),
            ref={"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace, "uid": uid}},
            containers=containers,
            sources=_sources(spec),
        )
        (root / "logs").mkdir(parents=True, exist_ok=True)
        with self._lock:
            self._runtimes[runtime.key] = runtime
        return runtime

    def _event(self, runtime: _PodRuntime, reason: str, message: str, type_: str = "Normal") -> None:
        """Record an event once per pod (a status poll must not repeat it every half second)."""
        if (reason, message) in runtime.events:
            return
        runtime.events.add((reason, message))
        self.ctx.record_event(runtime.ref, reason, message, type_)

    def _sync(self, runtime: _PodRuntime, pod: Obj) -> None:
        if not self._set_up(runtime, pod):
            return
        if runtime.init_failed:
            return
        init_policy: RestartPolicy = "Never" if runtime.restart_policy == "Never" else "OnFailure"
        for container in runtime.inits[runtime.init_done :]:
            if not container.started:
                self._start(runtime, pod, container, init_policy)
                return
            status = self.supervisor.status(container.process)
            if status.state != "exited":
                return  # still running, or restarting after a failure (OnFailure)
            if status.exit_code != 0:
                runtime.init_failed = True
                return
            runtime.init_done += 1
        for container in runtime.mains:
            if not container.started:
                self._start(runtime, pod, container, runtime.restart_policy)
            elif (
                isinstance(container.program, Program)
                and container.program.prepare is not None
                and self.supervisor.status(container.process).state == "waiting"
            ):
                # A restart is scheduled: clear what the last run left (keepalived's pid files) before it happens.
                with contextlib.suppress(OSError):
                    container.program.prepare()

    def _set_up(self, runtime: _PodRuntime, pod: Obj) -> bool:
        """Sandbox and volumes; False (with the reason kept for the status) while they cannot be made."""
        if runtime.sandbox is None:
            try:
                if runtime.host_network:
                    runtime.sandbox = host_network_sandbox(self.topology, runtime.node, runtime.key)
                else:
                    runtime.sandbox = create_sandbox(self.topology, runtime.node, runtime.key)
            except KalabError as err:
                runtime.setup_error = f"Failed to create pod sandbox: {err}"
                self._event(runtime, "FailedCreatePodSandBox", runtime.setup_error, "Warning")
                return False
        try:
            if runtime.volumes is None:
                runtime.volumes = prepare_volumes(pod, runtime.root, self._lookup)
            else:
                changed = sync_projected(pod, runtime.volumes, self._lookup)
                if changed:
                    _log.info("pod %s: volumes %s follow their sources", runtime.key, ", ".join(changed))
        except ContainerConfigError as err:
            if runtime.volumes is None:
                runtime.setup_error = str(err)
                self._event(runtime, "FailedMount", str(err), "Warning")
                return False
            # A running pod keeps the last content it saw, as the kubelet does when a source disappears.
            _log.info("pod %s: %s", runtime.key, err)
        except OSError as err:
            runtime.setup_error = f"MountVolume.SetUp failed: {err}"
            self._event(runtime, "FailedMount", runtime.setup_error, "Warning")
            return False
        runtime.setup_error = None
        return True

    def _start(self, runtime: _PodRuntime, pod: Obj, container: _Container, policy: RestartPolicy) -> None:
        assert runtime.sandbox is not None and runtime.volumes is not None
        if not isinstance(container.program, Program):
            # Recomputed until it works: an env source (ConfigMap key) may appear later; an unknown image never will.
            container.program = program_for(pod, container.spec, runtime.volumes, runtime.sandbox, self._lookup)
        program = container.program
        if isinstance(program, Refusal):
            self._refused(runtime, container, program)
            return
        try:
            if program.prepare is not None:
                program.prepare()
            container.log_path.parent.mkdir(parents=True, exist_ok=True)
            self.supervisor.start(
                ProcessSpec(
                    name=container.process,
                    argv=program.argv,
                    netns=runtime.sandbox.netns,
                    env=program.env,
                    cwd=runtime.root,
                    log_path=container.log_path,
                    restart_policy=policy,
                )
            )
        except (KalabError, OSError) as err:
            container.start_error = str(err)
            self._event(runtime, "Failed", f"Error: {err}", "Warning")
            return
        container.started, container.start_error = True, None
        self._event(runtime, "Pulled", f'Container image "{container.image}" already present on machine')
        self._event(runtime, "Created", f"Created container {container.name}")
        self._event(runtime, "Started", f"Started container {container.name}")

    def _refused(self, runtime: _PodRuntime, container: _Container, refusal: Refusal) -> None:
        if container.refused_since is None:
            container.refused_since = time.monotonic()
        reason = self._refusal_reason(container, refusal)
        if reason == container.reported:
            return
        container.reported = reason
        if reason == "ErrImagePull":
            self.ctx.record_event(runtime.ref, "Failed", f'Failed to pull image "{container.image}": {refusal.message}',
                                  "Warning")  # fmt: skip
            self.ctx.record_event(runtime.ref, "Failed", "Error: ErrImagePull", "Warning")
        elif reason == "ImagePullBackOff":
            self.ctx.record_event(runtime.ref, "BackOff", f'Back-off pulling image "{container.image}"')
            self.ctx.record_event(runtime.ref, "Failed", "Error: ImagePullBackOff", "Warning")
        else:
            self.ctx.record_event(runtime.ref, "Failed", f"Error: {refusal.message}", "Warning")

    @staticmethod
    def _refusal_reason(container: _Container, refusal: Refusal) -> str:
        if not isinstance(refusal, UnknownImage):
            return refusal.reason
        since = container.refused_since if container.refused_since is not None else time.monotonic()
        return "ErrImagePull" if time.monotonic() - since < IMAGE_BACKOFF_AFTER else "ImagePullBackOff"

    def _teardown(self, runtime: _PodRuntime) -> None:
        """Stop the pod's processes (all at once, one grace period), remove its sandbox and its directory."""
        with self._lock:
            mine = [s for key, s in self._sessions if key == runtime.key]
            self._sessions = [(key, s) for key, s in self._sessions if key != runtime.key]
        for session in mine:
            session.kill()
        started = [c for c in runtime.containers if c.started]
        for container in started:
            self.ctx.record_event(runtime.ref, "Killing", f"Stopping container {container.name}")
        if started:
            with ThreadPoolExecutor(max_workers=len(started), thread_name_prefix="kalab-kubelet-stop") as pool:
                for container, outcome in zip(
                    started,
                    pool.map(lambda c: self._stop_process(c.process, runtime.grace), started),
                    strict=True,
                ):
                    if outcome:
                        _log.warning("pod %s: stopping %s: %s", runtime.key, container.name, outcome)
        if runtime.sandbox is not None and not runtime.sandbox.host_network:
            delete_sandbox(self.topology, runtime.sandbox)
        shutil.rmtree(runtime.root, ignore_errors=True)
        with self._lock:  # only now: until its processes are gone the pod still counts as running here
            if self._runtimes.get(runtime.key) is runtime:
                del self._runtimes[runtime.key]

    def _stop_process(self, process: str, grace: float) -> str | None:
        try:
            self.supervisor.stop(process, grace)
        except KalabError as err:
            return str(err)
        return None

    # -- status ------------------------------------------------------------------------------------------------

    def _statuses(self, runtime: _PodRuntime) -> dict[str, ProcessStatus | None]:
        return {c.name: self.supervisor.status(c.process) if c.started else None for c in runtime.containers}

    def _phase(self, runtime: _PodRuntime, statuses: Mapping[str, ProcessStatus | None]) -> str:
        if runtime.init_failed:
            return "Failed"
        if runtime.init_done < len(runtime.inits):
            return "Pending"
        mains = [statuses[c.name] for c in runtime.mains]
        if not mains or any(s is None for s in mains):
            return "Pending"
        if all(s is not None and s.state == "exited" for s in mains):
            return "Succeeded" if all(s is not None and s.exit_code == 0 for s in mains) else "Failed"
        return "Running"

    def _transition(self, runtime: _PodRuntime, type_: str, status: str) -> str:
        previous = runtime.transitions.get(type_)
        if previous is None or previous[0] != status:
            runtime.transitions[type_] = (status, now_rfc3339())
        return runtime.transitions[type_][1]

    def _condition(self, runtime: _PodRuntime, type_: str, ok: bool, reason: str = "", message: str = "") -> Obj:
        status = "True" if ok else "False"
        condition: Obj = {"type": type_, "status": status, "lastProbeTime": None,
                          "lastTransitionTime": self._transition(runtime, type_, status)}  # fmt: skip
        if not ok and reason:
            condition["reason"], condition["message"] = reason, message
        return condition

    def _publish(self, runtime: _PodRuntime, pod: Obj) -> str:
        """Write the pod's status (only when it changed); returns the phase."""
        statuses = self._statuses(runtime)
        phase = self._phase(runtime, statuses)
        old = objects.status(pod)
        inits = [self._container_status(runtime, c, statuses[c.name]) for c in runtime.inits]
        mains = sorted((self._container_status(runtime, c, statuses[c.name]) for c in runtime.mains),
                       key=lambda s: str(s["name"]))  # fmt: skip
        pending_inits = [c.name for c in runtime.inits[runtime.init_done :]]
        unready = [s["name"] for s in mains if not s["ready"]]
        done = phase in ("Succeeded", "Failed")
        not_ready = ("PodCompleted", "") if done else (
            "ContainersNotReady", f"containers with unready status: [{' '.join(unready)}]")  # fmt: skip
        scheduled = next((c for c in old.get("conditions") or [] if c.get("type") == "PodScheduled"), None)
        conditions = [
            self._condition(runtime, "Initialized", not pending_inits or done, "ContainersNotInitialized",
                            f"containers with incomplete status: [{' '.join(pending_inits)}]"),
            self._condition(runtime, "Ready", not unready and not done, *not_ready),
            self._condition(runtime, "ContainersReady", not unready and not done, *not_ready),
            scheduled if scheduled and scheduled.get("status") == "True"
            else self._condition(runtime, "PodScheduled", True),
        ]  # fmt: skip
        host_ip = self.topology.node(runtime.node).ip
        status: Obj = {"phase": phase, "conditions": conditions, "hostIP": host_ip, "hostIPs": [{"ip": host_ip}]}
        if runtime.sandbox is not None:
            status["podIP"] = runtime.sandbox.ip
            status["podIPs"] = [{"ip": runtime.sandbox.ip}]
        status["startTime"] = runtime.start_time
        if inits:
            status["initContainerStatuses"] = inits
        status["containerStatuses"] = mains
        status["qosClass"] = qos_class(objects.spec(pod))
        if status != old:
            self.write_status(self.pods_rt, pod, status)  # the kubelet owns pod status: last writer wins
        return phase

    def _container_id(self, runtime: _PodRuntime, container: _Container, run: int) -> str:
        digest = hashlib.sha256(f"{runtime.uid}/{container.name}/{run}".encode()).hexdigest()
        return f"cri-o://{digest}"

    @staticmethod
    def _terminated(end: Termination, container_id: str) -> Obj:
        state: Obj = {"exitCode": end.exit_code, "reason": end.reason, "startedAt": _stamp(end.started_at),
                      "finishedAt": _stamp(end.finished_at), "containerID": container_id}  # fmt: skip
        if end.signal is not None:
            state["signal"] = end.signal
        return state

    def _waiting(self, runtime: _PodRuntime, container: _Container) -> Obj:
        program = container.program
        if runtime.setup_error is not None or runtime.sandbox is None or runtime.volumes is None:
            return {"reason": "ContainerCreating"}
        if isinstance(program, Refusal):
            reason = self._refusal_reason(container, program)
            message = program.message
            if reason == "ImagePullBackOff":
                message = f'Back-off pulling image "{container.image}": {program.message}'
            return {"reason": reason, "message": message}
        if container.start_error is not None:
            return {"reason": "CreateContainerError", "message": container.start_error}
        if container.init or runtime.init_done < len(runtime.inits):
            return {"reason": "PodInitializing"}
        return {"reason": "ContainerCreating"}

    def _container_status(self, runtime: _PodRuntime, container: _Container, status: ProcessStatus | None) -> Obj:
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
        if status is None:
            result["state"] = {"waiting": self._waiting(runtime, container)}
            return result
        container_id = self._container_id(runtime, container, status.restarts)
        result["restartCount"] = status.restarts
        result["containerID"] = container_id
        if status.state == "running":
            result["state"] = {"running": {"startedAt": _stamp(status.started_at)}}
            result["started"] = True
            result["ready"] = not container.init
        elif status.state == "waiting":
            message = (f"back-off restarting failed container {container.name} in pod "
                       f"{runtime.name}_{runtime.namespace}({runtime.uid})")  # fmt: skip
            result["state"] = {"waiting": {"reason": "CrashLoopBackOff", "message": message}}
            if container.reported != "CrashLoopBackOff":
                container.reported = "CrashLoopBackOff"
                self.ctx.record_event(runtime.ref, "BackOff", "B" + message[1:], "Warning")
        elif status.last_termination is not None:
            result["state"] = {"terminated": self._terminated(status.last_termination, container_id)}
            result["ready"] = container.init and status.exit_code == 0
        if status.state != "exited" and status.last_termination is not None and status.restarts > 0:
            previous = self._container_id(runtime, container, status.restarts - 1)
            result["lastState"] = {"terminated": self._terminated(status.last_termination, previous)}
        if status.state == "running" and container.reported == "CrashLoopBackOff":
            container.reported = None
        return result

    # -- PodHooks: logs ----------------------------------------------------------------------------------------

    def _pod(self, namespace: str, name: str) -> Obj:
        pod = self.ctx.store.try_get(self.pods_rt, namespace, name)
        if pod is None:
            raise not_found("pods", name)
        return pod

    @staticmethod
    def _pick(pod: Obj, requested: str | None) -> str:
        spec = objects.spec(pod)
        mains = [str(c.get("name")) for c in spec.get("containers") or []]
        inits = [str(c.get("name")) for c in spec.get("initContainers") or []]
        name = str(pod["metadata"].get("name"))
        if requested is None or requested == "":
            if len(mains) == 1:
                return mains[0]
            choice = f"a container name must be specified for pod {name}, choose one of: [{' '.join(mains)}]"
            if inits:
                choice += f" or one of the init containers: [{' '.join(inits)}]"
            raise bad_request(choice)
        if requested not in mains + inits:
            raise bad_request(f"container {requested} is not valid for pod {name}")
        return requested

    def _runtime_of(self, pod: Obj) -> _PodRuntime | None:
        meta = pod["metadata"]
        with self._lock:
            runtime = self._runtimes.get(f"{meta.get('namespace')}/{meta.get('name')}")
        return runtime if runtime is not None and runtime.uid == meta.get("uid") else None

    def _not_started(self, pod: Obj, runtime: _PodRuntime | None, name: str) -> ApiError:
        waiting = "ContainerCreating"
        if runtime is not None and (container := runtime.container(name)) is not None:
            reason = self._waiting(runtime, container).get("reason", waiting)
            waiting = "trying and failing to pull image" if reason in ("ErrImagePull", "ImagePullBackOff") else reason
        return bad_request(f'container "{name}" in pod "{pod["metadata"].get("name")}" is waiting to start: {waiting}')

    def logs(self, request: LogRequest) -> Iterator[bytes]:
        """The container's log (checked now, so errors come before any byte is streamed)."""
        pod = self._pod(request.namespace, request.pod)
        name = self._pick(pod, request.container)
        runtime = self._runtime_of(pod)
        container = runtime.container(name) if runtime is not None else None
        if runtime is None or container is None or not container.started:
            raise self._not_started(pod, runtime, name)
        path = container.log_path
        if request.previous:
            path = path.with_name(path.name + ".previous")
            if not path.exists():
                raise bad_request(f'previous terminated container "{name}" in pod "{request.pod}" not found')
        since = datetime.now(UTC) - timedelta(seconds=request.since_seconds) if request.since_seconds else None
        uid, process = runtime.uid, container.process

        def running() -> bool:
            with self._lock:
                current = self._runtimes.get(runtime.key)
            return current is not None and current.uid == uid and self.supervisor.status(process).state == "running"

        follow = request.follow and not request.previous
        return _read_log(path, request.timestamps, request.tail_lines, since, running if follow else None)

    # -- pods/attach --------------------------------------------------------------------------------------------

    def attach(self, request: ExecRequest) -> ExecSession:
        """The container's output (its current run, from the start) until it exits; see controllers/attach.py."""
        pod = self._pod(request.namespace, request.pod)
        name = self._pick(pod, request.container)
        phase = objects.phase_of(pod)
        if phase in ("Succeeded", "Failed"):
            raise bad_request(f"cannot attach to a container in a completed pod; current phase is {phase}")
        lines = self.logs(LogRequest(request.namespace, request.pod, name, follow=True))
        runtime = self._runtime_of(pod)
        terminal = typescript(runtime.root, name) if runtime is not None and request.tty else None
        container = runtime.container(name) if runtime is not None else None
        assert container is not None  # logs() refused a container that is not started
        process = container.process

        def exit_code() -> int | None:
            status = self.supervisor.status(process)
            return None if status.state == "running" else int(status.exit_code or 0)

        fifo = stdin_fifo(runtime.root, name) if runtime is not None else None
        if terminal is not None and fifo is not None and fifo.exists():  # an interactive tty container
            lines = terminal_output(follow_raw(terminal, lambda: self.supervisor.status(process).state == "running"))
        stdin = fifo if request.stdin and fifo is not None and fifo.exists() else None
        return LogSession(lines, exit_code, stdin)

    # -- PodHooks: exec ----------------------------------------------------------------------------------------

    def exec(self, request: ExecRequest) -> ExecSession:
        pod = self._pod(request.namespace, request.pod)
        name = self._pick(pod, request.container)
        phase = objects.phase_of(pod)
        if phase in ("Succeeded", "Failed"):
            raise bad_request(f"cannot exec into a container in a completed pod; current phase is {phase}")
        runtime = self._runtime_of(pod)
        container = runtime.container(name) if runtime is not None else None
        if (
            runtime is None
            or runtime.sandbox is None
            or container is None
            or not container.started
            or (self.supervisor.status(container.process).state != "running")
        ):
            raise bad_request(f'unable to upgrade connection: container not found ("{name}")')
        if not request.command:
            raise bad_request("you must specify at least one command for the container")
        env = {"PATH": BASE_PATH, "HOSTNAME": runtime.name, "HOME": "/root"}
        with contextlib.suppress(ContainerConfigError):
            env.update(container_env(pod, container.spec, runtime.sandbox, self._lookup))
        if request.tty:
            env["TERM"] = "xterm"
        argv = HERE.command(runtime.sandbox.netns, request.command)
        session = _ExecProcess(argv, env, stdin=request.stdin, tty=request.tty, cwd=runtime.root)
        with self._lock:
            self._sessions = [(key, s) for key, s in self._sessions if not s.finished()]
            self._sessions.append((runtime.key, session))
        return session

    # -- PodHooks: proxy ---------------------------------------------------------------------------------------

    def proxy(
        self, namespace: str, pod: str, port: int, path: str, method: str, headers: Sequence[tuple[str, str]],
        body: bytes,
    ) -> ProxyResponse:  # fmt: skip
        """An HTTP request to podIP:port, made by curl inside the pod's node namespace (never from the host)."""
        found = self._pod(namespace, pod)
        runtime = self._runtime_of(found)
        if runtime is None or runtime.sandbox is None:
            raise ApiError(503, "ServiceUnavailable", f'pod "{pod}" has no IP address yet; it is not running')
        if not 0 < int(port) < 65536:
            raise bad_request(f"invalid port {port}")
        if not path.startswith("/") or any(ch.isspace() or ord(ch) < 32 for ch in path):
            raise bad_request(f"invalid proxy path {path!r}")
        if not _TOKEN.match(method):
            raise bad_request(f"invalid method {method!r}")
        url = f"http://{runtime.sandbox.ip}:{int(port)}{path}"
        argv = ["curl", "-sS", "-i", "--path-as-is", "--connect-timeout", "5", "--max-time", f"{PROXY_TIMEOUT:g}",
                "-X", method.upper(), "-H", "Expect:"]  # fmt: skip
        for key, value in headers:
            if key.lower() in _HOP_BY_HOP or not _TOKEN.match(key) or "\r" in value or "\n" in value:
                continue
            argv += ["-H", f"{key}: {value}"]
        if body:
            argv += ["--data-binary", "@-"]
        argv.append(url)
        done = subprocess.run(
            HERE.command(self.topology.node_ns(runtime.node), argv),
            input=body,
            capture_output=True,
            timeout=PROXY_TIMEOUT + 10,
            check=False,
        )
        if done.returncode != 0:
            reason = done.stderr.decode(errors="replace").strip().removeprefix("curl: ")
            raise ApiError(503, "ServiceUnavailable", f"error trying to reach service: {reason or 'no answer'}")
        return parse_http_response(done.stdout)

    # -- PodHooks: port forward --------------------------------------------------------------------------------

    def port_forward(self, namespace: str, pod: str, port: int) -> socket.socket:
        """A connection to localhost:port in the pod's network namespace (the node's, for hostNetwork pods)."""
        found = self._pod(namespace, pod)
        runtime = self._runtime_of(found)
        if runtime is None or runtime.sandbox is None:
            raise ApiError(404, "NotFound", f'pod "{pod}" is not running on its node')
        return connect_in(HERE, runtime.sandbox.netns, int(port))


def parse_http_response(raw: bytes) -> ProxyResponse:
    """What `curl -i` printed: status line, headers and body (interim 1xx responses skipped)."""
    rest = raw
    while True:
        head, sep, after = rest.partition(b"\r\n\r\n")
        if not sep:
            raise ApiError(502, "BadGateway", "error trying to reach service: the pod sent no complete HTTP response")
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        try:
            code = int(parts[1])
        except (IndexError, ValueError):
            raise ApiError(502, "BadGateway", f"error trying to reach service: bad status line {lines[0]!r}") from None
        if 100 <= code < 200 and after.startswith(b"HTTP/"):
            rest = after
            continue
        headers = []
        for line in lines[1:]:
            key, colon, value = line.partition(":")
            if colon and key.strip().lower() not in _HOP_BY_HOP:
                headers.append((key.strip(), value.strip()))
        headers.append(("Content-Length", str(len(after))))
        return ProxyResponse(code, headers, after)


# ---------------------------------------------------------------------------------------------------------------
# Logs


def _parse_stamp(token: bytes) -> datetime | None:
    text = token.decode(errors="replace")
    try:
        whole, _, frac = text.rstrip("Z").partition(".")
        return datetime.strptime(whole, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC, microsecond=int((frac + "000000")[:6]))
    except ValueError:
        return None


def _format(line: bytes, timestamps: bool) -> bytes:
    # The supervisor starts every line with an RFC3339Nano stamp and a space; `--timestamps` keeps it.
    return line + b"\n" if timestamps else line.partition(b" ")[2] + b"\n"


def _read_log(
    path: Path,
    timestamps: bool,
    tail: int | None,
    since: datetime | None,
    running: Callable[[], bool] | None,
) -> Iterator[bytes]:
    def wanted(line: bytes) -> bool:
        if since is None:
            return True
        stamp = _parse_stamp(line.partition(b" ")[0])
        return stamp is None or stamp >= since

    try:
        handle: IO[bytes] = path.open("rb")
    except FileNotFoundError:
        return
    with handle:
        lines = handle.read().split(b"\n")
        partial = lines.pop()
        lines = [line for line in lines if wanted(line)]
        if tail is not None:
            lines = lines[-tail:] if tail > 0 else []
        for line in lines:
            yield _format(line, timestamps)
        if running is None:
            return
        inode = os.fstat(handle.fileno()).st_ino
        while True:
            chunk = handle.read()
            if chunk:
                pieces = (partial + chunk).split(b"\n")
                partial = pieces.pop()
                for line in pieces:
                    if wanted(line):
                        yield _format(line, timestamps)
                continue
            try:
                replaced = path.stat().st_ino != inode  # the container restarted: this run's log is complete
            except FileNotFoundError:
                replaced = True
            if replaced or not running():
                rest = handle.read()  # whatever was written between the last read and the stop
                for line in (partial + rest).split(b"\n"):
                    if line and wanted(line):
                        yield _format(line, timestamps)
                return
            time.sleep(LOG_POLL)


# ---------------------------------------------------------------------------------------------------------------
# Exec


_PR_SET_PDEATHSIG: Final = 1
_libc = ctypes.CDLL(None, use_errno=True)


def _child_setup(parent: int, tty: bool) -> Callable[[], None]:
    """Runs in the child between fork and exec (after setsid): die with the thread that started the session, so a
    crashed lab leaves no exec'd command behind, and with a tty make the pty the session's controlling terminal."""
    prctl, sigkill = _libc.prctl, int(signal.SIGKILL)

    def setup() -> None:
        if prctl(_PR_SET_PDEATHSIG, sigkill, 0, 0, 0) != 0 or os.getppid() != parent:
            os._exit(126)
        if tty:
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    return setup


class _ExecProcess:
    """One `ip netns exec` command with pipes (or a pty): the ExecSession the API server streams.

    The command lives no longer than the thread that started it (the API server's handler for this session).
    """

    def __init__(self, argv: list[str], env: Mapping[str, str], *, stdin: bool, tty: bool, cwd: Path) -> None:
        self._lock = threading.Lock()
        self._queue: queue.Queue[tuple[int, bytes]] = queue.Queue()
        self._master: int | None = None
        self._stdin: IO[bytes] | None = None
        self._tty = tty
        readers: list[tuple[int, int]] = []
        if tty:
            master, slave = pty.openpty()
            try:
                self._popen = subprocess.Popen(
                    argv, stdin=slave, stdout=slave, stderr=slave, env=dict(env), cwd=cwd,
                    start_new_session=True, preexec_fn=_child_setup(os.getpid(), tty=True),
                )  # fmt: skip
            except BaseException:
                os.close(master)
                raise
            finally:
                os.close(slave)
            self._master = master
            readers.append((1, master))
        else:
            self._popen = subprocess.Popen(
                argv, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, env=dict(env), cwd=cwd, start_new_session=True,
                preexec_fn=_child_setup(os.getpid(), tty=False),
            )  # fmt: skip
            assert self._popen.stdout is not None and self._popen.stderr is not None
            self._stdin = self._popen.stdin
            readers += [(1, self._popen.stdout.fileno()), (2, self._popen.stderr.fileno())]
        self._pidfd = os.pidfd_open(self._popen.pid)
        self._open_streams = len(readers)
        self._threads = [
            threading.Thread(target=self._pump, args=(stream, fd), name="kalab-exec-io", daemon=True)
            for stream, fd in readers
        ]
        for thread in self._threads:
            thread.start()

    def _pump(self, stream: int, fd: int) -> None:
        try:
            while True:
                try:
                    data = os.read(fd, 65536)
                except OSError:  # EIO: the pty's other side is gone
                    data = b""
                if not data:
                    return
                self._queue.put((stream, data))
        finally:
            self._queue.put((stream, b""))

    def write_stdin(self, data: bytes) -> None:
        with contextlib.suppress(BrokenPipeError, OSError, ValueError):
            if self._master is not None:
                os.write(self._master, data)
            elif self._stdin is not None:
                self._stdin.write(data)
                self._stdin.flush()

    def close_stdin(self) -> None:
        with contextlib.suppress(BrokenPipeError, OSError, ValueError):
            if self._master is not None:
                os.write(self._master, b"\x04")  # end of input on a terminal
            elif self._stdin is not None:
                self._stdin.close()

    def read(self, timeout: float) -> tuple[int, bytes] | None:
        deadline = time.monotonic() + timeout
        while self._open_streams:
            try:
                stream, data = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                return None
            if data:
                return stream, data
            self._open_streams -= 1
        return 0, b""

    def resize(self, width: int, height: int) -> None:
        if self._master is not None:
            with contextlib.suppress(OSError):
                fcntl.ioctl(self._master, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                code = self._reap()
            if code is not None:
                return code
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise TimeoutError("the command is still running")
            select.select([self._pidfd], [], [], 0.5 if left is None else min(left, 0.5))

    def _reap(self) -> int | None:
        """The exit code once the command ended; whatever it left in its process group is killed first."""
        if self._popen.returncode is None:
            if os.waitid(os.P_PID, self._popen.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
                return None
            # Still a zombie, so its PID names its group and nobody else's: take its leftovers with it.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._popen.pid, signal.SIGKILL)
            self._popen.wait()
            os.close(self._pidfd)
            for thread in self._threads:
                thread.join(timeout=5)
            if self._master is not None:
                os.close(self._master)
                self._master = None
            for pipe in (self._popen.stdin, self._popen.stdout, self._popen.stderr):
                if pipe is not None:
                    with contextlib.suppress(OSError):
                        pipe.close()
        code = self._popen.returncode
        return 128 - code if code < 0 else code

    def finished(self) -> bool:
        with self._lock:
            return self._reap() is not None

    def kill(self) -> None:
        with self._lock:
            if self._popen.returncode is None:
                # Not reaped yet, so the group ID is still ours, whether the command runs or is a zombie.
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self._popen.pid, signal.SIGKILL)
        with contextlib.suppress(TimeoutError):
            self.wait(10)
