"""The kubelet's streams, as the API server's PodHooks call them: `pods/log`, `pods/attach`, `pods/exec`, the pod
proxy and `pods/portforward`.

Logs come from the supervisor's log files (dataplane/logfiles.py); exec runs `ip netns exec <pod's namespace>
<command>` (dataplane/execsession.py); the proxy is an HTTP request made with curl from inside the pod's node
namespace, and a port forward a socket connected from inside the pod's namespace (netns_socket.py): lab
addresses are never contacted from the host namespace.
"""

from __future__ import annotations

import contextlib
import re
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Final

from kalab.lab.apiserver.errors import ApiError, bad_request, not_found
from kalab.lab.apiserver.hooks import ExecRequest, ExecSession, LogRequest, ProxyResponse
from kalab.lab.apiserver.resources import ResourceType
from kalab.lab.apiserver.store import Obj
from kalab.lab.context import LabContext
from kalab.lab.controllers.kubelet import status
from kalab.lab.controllers.kubelet.attach import LogSession
from kalab.lab.controllers.kubelet.state import PodRuntime
from kalab.lab.dataplane.entry import HERE
from kalab.lab.dataplane.execsession import ExecProcess
from kalab.lab.dataplane.logfiles import follow_raw, read_log
from kalab.lab.dataplane.netns_socket import connect_in
from kalab.lab.dataplane.supervisor import Supervisor
from kalab.lab.dataplane.topology import Topology
from kalab.lab.images.containerenv import BASE_PATH, container_env
from kalab.lab.images.node_debug import stdin_fifo, terminal_output, typescript
from kalab.lab.images.outcomes import ContainerConfigError
from kalab.model import objects

PROXY_TIMEOUT: Final = 30.0
_HOP_BY_HOP: Final = frozenset(
    {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer", "trailers",
     "transfer-encoding", "upgrade", "content-length", "host", "expect", "authorization"}
)  # fmt: skip
_TOKEN: Final = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


class PodStreams:
    """The PodHooks half of the kubelet (runtime.py's Kubelet is the other half and sets what is declared here)."""

    ctx: LabContext
    topology: Topology
    supervisor: Supervisor
    pods_rt: ResourceType
    _lock: threading.RLock
    _runtimes: dict[str, PodRuntime]
    _sessions: list[tuple[str, ExecProcess]]

    def _lookup(self, kind: str, namespace: str, name: str) -> Obj | None:
        raise NotImplementedError

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

    def _live_pod(self, request: ExecRequest, verb: str) -> tuple[Obj, str]:
        """The pod and the container `request` names, refused (as the API server does) once the pod completed."""
        pod = self._pod(request.namespace, request.pod)
        name = self._pick(pod, request.container)
        phase = objects.phase_of(pod)
        if phase in ("Succeeded", "Failed"):
            raise bad_request(f"cannot {verb} a container in a completed pod; current phase is {phase}")
        return pod, name

    def _runtime_of(self, pod: Obj) -> PodRuntime | None:
        meta = pod["metadata"]
        with self._lock:
            runtime = self._runtimes.get(f"{meta.get('namespace')}/{meta.get('name')}")
        return runtime if runtime is not None and runtime.uid == meta.get("uid") else None

    def _not_started(self, pod: Obj, runtime: PodRuntime | None, name: str) -> ApiError:
        waiting = "ContainerCreating"
        if runtime is not None and (container := runtime.container(name)) is not None:
            reason = status.waiting(runtime, container, time.monotonic()).get("reason", waiting)
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
        return read_log(path, request.timestamps, request.tail_lines, since, running if follow else None)

    # -- pods/attach --------------------------------------------------------------------------------------------

    def attach(self, request: ExecRequest) -> ExecSession:
        """The container's output (its current run, from the start) until it exits; see attach.py."""
        pod, name = self._live_pod(request, "attach to")
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
        pod, name = self._live_pod(request, "exec into")
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
        session = ExecProcess(argv, env, stdin=request.stdin, tty=request.tty, cwd=runtime.root)
        with self._lock:
            self._sessions = [(key, s) for key, s in self._sessions if not s.finished()]
            self._sessions.append((runtime.key, session))
        return session

    # -- PodHooks: proxy ---------------------------------------------------------------------------------------

    def proxy(
        self,
        namespace: str,
        pod: str,
        port: int,
        path: str,
        method: str,
        headers: Sequence[tuple[str, str]],
        body: bytes,
    ) -> ProxyResponse:
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
