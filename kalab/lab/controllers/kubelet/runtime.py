"""The kubelet's pod lifecycle: admit a pod bound to a lab node, keep its containers running (sync), and tear it
down when it is deleted or moves; every half second its status is recomputed (status.py) and written.

For each pod with `spec.nodeName` on a lab node it does what a node's kubelet and container runtime do:
1. a sandbox — hostNetwork pods use the node's namespace (podIP = node IP), others get their own (sandbox.py);
2. volumes — directories under the pod's own directory (images/volumes.py); configMap/secret volumes are
   re-synced on every tick and on every change of their source, as the kubelet's periodic sync does, which is how
   a new keepalived.conf reaches the config-reloader;
3. init containers one after the other, each to completion, then every container, each started by the supervisor
   as `<ns>/<pod>/<container>` with the pod's restartPolicy; what each image runs comes from registry.program_for,
   and an unknown image is never executed: the container waits with ErrImagePull/ImagePullBackOff;
4. status, recomputed from the supervisor every half second while the pod lives: phase, conditions, container
   statuses with restart counts and last states, podIP/hostIP, startTime, qosClass.
A deleted pod's processes get SIGTERM (SIGKILL after the grace period), its sandbox and directory are removed.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Final

from kalab.lab.apiserver.store import Event, Obj, now_rfc3339
from kalab.lab.context import LabContext
from kalab.lab.controllers.base import Controller, object_key, split_key
from kalab.lab.controllers.kubelet import status
from kalab.lab.controllers.kubelet.state import Container, PodRuntime, sources
from kalab.lab.controllers.kubelet.streams import PodStreams
from kalab.lab.dataplane.execsession import ExecProcess
from kalab.lab.dataplane.processes import ProcessSpec
from kalab.lab.dataplane.restart_policy import RestartPolicy
from kalab.lab.dataplane.sandbox import create_sandbox, delete_sandbox, host_network_sandbox
from kalab.lab.images.outcomes import ContainerConfigError, Program, Refusal
from kalab.lab.images.registry import program_for
from kalab.lab.images.volumes import prepare_volumes, sync_projected
from kalab.model import objects
from kalab.model.errors import KalabError

_log = logging.getLogger(__name__)

STATUS_POLL: Final = 0.5  # seconds between status refreshes of a live pod
MAX_GRACE: Final = 30.0


class Kubelet(PodStreams, Controller):
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
        self._runtimes: dict[str, PodRuntime] = {}
        self._sessions: list[tuple[str, ExecProcess]] = []
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

    def _admit(self, pod: Obj) -> PodRuntime:
        meta, spec = pod["metadata"], objects.spec(pod)
        namespace, name, uid = str(meta.get("namespace")), str(meta.get("name")), str(meta.get("uid"))
        root = self.root / "pods" / f"{namespace}_{name}_{uid}"
        policies: dict[str, RestartPolicy] = {"Always": "Always", "OnFailure": "OnFailure", "Never": "Never"}
        policy = policies.get(str(spec.get("restartPolicy")), "Always")
        containers = [
            Container(c, init, f"{namespace}/{name}/{c.get('name')}", root / "logs" / f"{c.get('name')}.log")
            for init, group in ((True, spec.get("initContainers") or []), (False, spec.get("containers") or []))
            for c in group
        ]
        runtime = PodRuntime(
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
            sources=sources(spec),
        )
        (root / "logs").mkdir(parents=True, exist_ok=True)
        with self._lock:
            self._runtimes[runtime.key] = runtime
        return runtime

    def _event(self, runtime: PodRuntime, reason: str, message: str, type_: str = "Normal") -> None:
        """Record an event once per pod (a status poll must not repeat it every half second)."""
        if (reason, message) in runtime.events:
            return
        runtime.events.add((reason, message))
        self.ctx.record_event(runtime.ref, reason, message, type_)

    def _sync(self, runtime: PodRuntime, pod: Obj) -> None:
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

    def _set_up(self, runtime: PodRuntime, pod: Obj) -> bool:
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

    def _start(self, runtime: PodRuntime, pod: Obj, container: Container, policy: RestartPolicy) -> None:
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

    def _refused(self, runtime: PodRuntime, container: Container, refusal: Refusal) -> None:
        if container.refused_since is None:
            container.refused_since = time.monotonic()
        reason = status.refusal_reason(container, refusal, time.monotonic())
        if reason == container.reported:
            return
        container.reported = reason
        if reason == "ErrImagePull":
            self.ctx.record_event(
                runtime.ref, "Failed", f'Failed to pull image "{container.image}": {refusal.message}', "Warning"
            )
            self.ctx.record_event(runtime.ref, "Failed", "Error: ErrImagePull", "Warning")
        elif reason == "ImagePullBackOff":
            self.ctx.record_event(runtime.ref, "BackOff", f'Back-off pulling image "{container.image}"')
            self.ctx.record_event(runtime.ref, "Failed", "Error: ImagePullBackOff", "Warning")
        else:
            self.ctx.record_event(runtime.ref, "Failed", f"Error: {refusal.message}", "Warning")

    def _teardown(self, runtime: PodRuntime) -> None:
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

    def _publish(self, runtime: PodRuntime, pod: Obj) -> str:
        """Write the pod's status (only when it changed); returns the phase."""
        processes = {c.name: self.supervisor.status(c.process) if c.started else None for c in runtime.containers}
        host_ip = self.topology.node(runtime.node).ip
        old = objects.status(pod)
        found = status.pod_status(runtime, processes, old, objects.spec(pod), host_ip, now_rfc3339(), time.monotonic())
        runtime.transitions = found.transitions
        self._report_crash_loops(runtime, found.status)
        if found.status != old:
            self.write_status(self.pods_rt, pod, found.status)  # the kubelet owns pod status: last writer wins
        return found.phase

    def _report_crash_loops(self, runtime: PodRuntime, pod_status: Obj) -> None:
        """One BackOff event each time a container enters CrashLoopBackOff (not one every status poll)."""
        for shown in [*pod_status.get("initContainerStatuses", []), *pod_status["containerStatuses"]]:
            container = runtime.container(str(shown["name"]))
            if container is None:
                continue
            state = shown["state"]
            if state.get("waiting", {}).get("reason") == status.CRASH_LOOP and container.reported != status.CRASH_LOOP:
                container.reported = status.CRASH_LOOP
                self.ctx.record_event(runtime.ref, "BackOff", "B" + state["waiting"]["message"][1:], "Warning")
            elif "running" in state and container.reported == status.CRASH_LOOP:
                container.reported = None
