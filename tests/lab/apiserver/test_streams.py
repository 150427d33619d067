"""The streaming pod subresources (exec, log, proxy) against real clients: the `kubernetes` Python client and kubectl.

A small HTTP(S) server on 127.0.0.1 routes the pod subresource URLs to `streams`, as the lab's API server does. The
kubelet is replaced by a test double: exec runs the requested command as a local process, logs yield canned lines,
the proxy answers with a canned response. Everything else — upgrade, channels, status, chunking — is the real
protocol as the clients speak it.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import http.client
import http.server
import ipaddress
import json
import os
import queue
import re
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
import urllib3
import websocket  # websocket-client (the Python client's transport): to look at frames the clients hide
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from kubernetes.stream import stream

from kalab.lab.apiserver import streams, transport
from kalab.lab.apiserver.errors import ApiError, bad_request, not_found
from kalab.lab.apiserver.hooks import ExecRequest, LogRequest, ProxyResponse
from tests.support.waiting import wait_for

TOKEN = "test-token-0123456789"
# The venv's kubectl (a dev dependency), else one on PATH.
KUBECTL = shutil.which("kubectl", path=str(Path(sys.executable).parent)) or shutil.which("kubectl")


# ------------------------------------------------------------------------------------------ the kubelet's double


class FakeSession:
    """An exec session backed by a local process, with the ExecSession semantics the kubelet provides."""

    def __init__(self, command: Sequence[str], stdin: bool) -> None:
        self.proc = subprocess.Popen(
            list(command),
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.output: queue.Queue[tuple[int, bytes]] = queue.Queue()
        self.eofs = 0
        self.resizes: list[tuple[int, int]] = []
        self.killed = threading.Event()
        assert self.proc.stdout is not None and self.proc.stderr is not None
        for number, pipe in ((1, self.proc.stdout), (2, self.proc.stderr)):
            threading.Thread(target=self._copy, args=(number, pipe.fileno()), daemon=True).start()

    def _copy(self, number: int, fd: int) -> None:
        while chunk := os.read(fd, 65536):
            self.output.put((number, chunk))
        self.output.put((number, b""))

    def write_stdin(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def close_stdin(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()

    def read(self, timeout: float) -> tuple[int, bytes] | None:
        while self.eofs < 2:
            try:
                number, data = self.output.get(timeout=timeout)
            except queue.Empty:
                return None
            if data:
                return number, data
            self.eofs += 1
        return 0, b""

    def resize(self, width: int, height: int) -> None:
        self.resizes.append((width, height))

    def wait(self, timeout: float | None = None) -> int:
        return self.proc.wait(timeout)

    def kill(self) -> None:
        self.killed.set()
        self.proc.kill()


class BrokenSession(FakeSession):
    """A session whose runtime fails after the upgrade: the error must reach the client on channel 3."""

    def read(self, timeout: float) -> tuple[int, bytes] | None:
        raise ApiError(500, "InternalError", "container runtime went away")


@dataclass
class FakeHooks:
    pods: dict[tuple[str, str], tuple[str, ...]] = field(
        default_factory=lambda: {
            ("demo", "web"): ("app",),
            ("demo", "pair"): ("a", "b"),
            ("demo", "broken"): ("app",),
            ("demo", "vanishing"): ("app",),
        }
    )
    sessions: list[FakeSession] = field(default_factory=list)
    proxied: list[dict[str, Any]] = field(default_factory=list)
    follow_release: threading.Event = field(default_factory=threading.Event)
    follow_closed: threading.Event = field(default_factory=threading.Event)

    def container(self, namespace: str, pod: str, container: str | None) -> str:
        containers = self.pods.get((namespace, pod))
        if containers is None:
            raise not_found("pods", pod)
        if container is None:
            if len(containers) > 1:
                raise bad_request(
                    f"a container name must be specified for pod {pod}, choose one of: {list(containers)}"
                )
            return containers[0]
        if container not in containers:
            raise bad_request(f"container {container} is not valid for pod {pod}")
        return container

    def logs(self, request: LogRequest) -> Iterator[bytes]:
        self.container(request.namespace, request.pod, request.container)
        return self._lines(request)

    def _lines(self, request: LogRequest) -> Iterator[bytes]:
        try:
            if request.pod == "vanishing":
                # An error only raised on the first read, as a generator-based kubelet would.
                raise not_found("pods", request.pod)
            lines = [f"line {i}\n".encode() for i in range(1, 4)]
            if request.tail_lines is not None:
                lines = lines[-request.tail_lines :]
            yield from lines
            if request.follow:
                self.follow_release.wait(20)
                yield b"after release\n"
        finally:
            self.follow_closed.set()

    def exec(self, request: ExecRequest) -> FakeSession:
        self.container(request.namespace, request.pod, request.container)
        kind = BrokenSession if request.pod == "broken" else FakeSession
        session = kind(request.command, request.stdin)
        self.sessions.append(session)
        return session

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
        self.container(namespace, pod, None)
        self.proxied.append(
            {"pod": pod, "port": port, "path": path, "method": method, "headers": list(headers), "body": body}
        )
        if port == 1:
            raise ConnectionRefusedError(111, "connect: connection refused")
        return ProxyResponse(
            200,
            [
                ("Content-Type", "text/plain; version=0.0.4"),
                ("Connection", "close, X-Pod-Private"),
                ("X-Pod-Private", "hop"),
                ("Keep-Alive", "timeout=5"),
                ("Transfer-Encoding", "chunked"),
                ("Content-Length", "999"),
                ("X-Pod", pod),
            ],
            b'keepalived_vrrp_state{iname="VI_1"} 2\n',
        )


# --------------------------------------------------------------------------------------- a minimal API server


POD_PATH = re.compile(
    r"^/api/v1/namespaces/(?P<ns>[^/]+)/pods/(?P<pod>[^/]+)(?:/(?P<sub>exec|log|proxy)(?P<rest>/.*)?)?$"
)
DISCOVERY: dict[str, Any] = {
    "/version": {"major": "1", "minor": "37", "gitVersion": "v1.37.0", "platform": "linux/amd64"},
    "/api": {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []},
    "/apis": {"kind": "APIGroupList", "apiVersion": "v1", "groups": []},
    "/api/v1": {
        "kind": "APIResourceList",
        "groupVersion": "v1",
        "resources": [
            {"name": "pods", "singularName": "pod", "namespaced": True, "kind": "Pod", "shortNames": ["po"],
             "verbs": ["get", "list"]},
            {"name": "pods/exec", "singularName": "", "namespaced": True, "kind": "PodExecOptions", "verbs": ["get"]},
            {"name": "pods/log", "singularName": "", "namespaced": True, "kind": "Pod", "verbs": ["get"]},
            {"name": "pods/proxy", "singularName": "", "namespaced": True, "kind": "PodProxyOptions",
             "verbs": ["get", "create"]},
        ],
    },
}  # fmt: skip


def flag(query: dict[str, list[str]], name: str) -> bool:
    return query.get(name, ["false"])[-1].lower() in ("true", "1")


class Handler:
    """Routes one request of the harness's server, as the lab's API server routes pod subresources."""

    def __init__(self, server: Harness, exchange: transport.Exchange) -> None:
        self.server = server
        self.ex = exchange
        self.headers = exchange.headers
        self.path = exchange.request.target

    def send_json(self, code: int, body: Any) -> None:
        self.ex.respond(code, [("Content-Type", "application/json")], json.dumps(body).encode())

    def route(self, method: str) -> None:
        self.server.seen.append((method, self.path, {k.lower(): v for k, v in self.headers.items()}))
        body = self.ex.read_body(1 << 20)
        if self.server.token and self.headers.get("Authorization") != f"Bearer {self.server.token}":
            self.send_json(401, ApiError(401, "Unauthorized", "Unauthorized").status())
            return
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        if url.path in DISCOVERY:
            self.send_json(200, DISCOVERY[url.path])
            return
        if url.path == "/api/v1/namespaces/demo":
            self.send_json(200, {"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": "demo"}})
            return
        match = POD_PATH.match(url.path)
        if match is None:
            self.send_json(404, not_found("paths", url.path).status())
            return
        hooks = self.server.hooks
        ns, pod, sub = match["ns"], unquote(match["pod"]), match["sub"]
        container = query.get("container", [None])[-1]
        try:
            if sub is None:
                self.send_json(200, pod_object(hooks, ns, pod))
            elif sub == "exec":
                request = ExecRequest(
                    ns, pod, container, query.get("command", []), flag(query, "stdin"), flag(query, "tty")
                )
                streams.serve_exec(self.ex, hooks, request)
            elif sub == "log":
                tail = query.get("tailLines")
                request_log = LogRequest(
                    ns, pod, container, follow=flag(query, "follow"), tail_lines=int(tail[-1]) if tail else None
                )
                streams.serve_log(self.ex, hooks, request_log)
            else:
                name, _, port = pod.partition(":")
                rest = match["rest"] or "/"
                if url.query:
                    rest += "?" + url.query
                streams.serve_proxy(self.ex, hooks, ns, name, int(port or 80), rest, method, body)
        except ApiError as error:
            self.send_json(error.code, error.status())
        finally:
            self.server.finished.put((sub, pod))


def pod_object(hooks: FakeHooks, namespace: str, pod: str) -> dict[str, Any]:
    # "ghost" exists in storage but not for the kubelet (deleted in between): exec fails at the kubelet.
    containers = ("app",) if pod == "ghost" else hooks.pods.get((namespace, pod))
    if containers is None:
        raise not_found("pods", pod)
    return {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {"name": pod, "namespace": namespace, "uid": "0000", "resourceVersion": "1"},
        "spec": {"containers": [{"name": c, "image": "example/app"} for c in containers], "nodeName": "master-0"},
        "status": {"phase": "Running", "podIP": "10.254.0.10"},
    }


class Harness:
    """The lab's HTTP layer (kalab.lab.apiserver.transport) serving `Handler`, over TLS or plain HTTP."""

    def __init__(self, tls: ssl.SSLContext | None) -> None:
        self.hooks = FakeHooks()
        self.tls = tls
        self.token = TOKEN if tls else None  # tokens only over TLS, as kubectl sends them
        self.seen: list[tuple[str, str, dict[str, str]]] = []
        self.finished: queue.Queue[tuple[str | None, str]] = queue.Queue()
        self.http = transport.Server(
            socket.create_server(("127.0.0.1", 0)),
            lambda exchange: Handler(self, exchange).route(exchange.request.method),
            lambda status, reason: ([("Content-Type", "text/plain")], reason.encode()),
            tls,
            idle_timeout=30,
            handshake_timeout=10,
        )
        self.server_address = self.http.address

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.server_address[1]}"


@dataclass(frozen=True)
class Tls:
    ca_file: Path
    server: ssl.SSLContext
    ca_pem: bytes


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    """A self-signed certificate for 127.0.0.1 that is its own CA, as the lab's kubeconfig will carry it."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kalab-test-apiserver")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    (folder / "cert.pem").write_bytes(cert_pem)
    (folder / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    return Tls(folder / "cert.pem", context, cert_pem)


def serve(tls_context: ssl.SSLContext | None) -> Iterator[Harness]:
    server = Harness(tls_context)
    server.http.start()
    try:
        yield server
    finally:
        server.http.shutdown()
        for session in server.hooks.sessions:
            if session.proc.poll() is None:
                session.proc.kill()
            session.proc.wait(5)


@pytest.fixture(params=["http", "https"])
def harness(request: pytest.FixtureRequest, tls: Tls) -> Iterator[Harness]:
    yield from serve(tls.server if request.param == "https" else None)


@pytest.fixture
def plain() -> Iterator[Harness]:
    yield from serve(None)


def core(harness: Harness, tls: Tls) -> k8s.CoreV1Api:
    config = k8s.Configuration()
    config.host = harness.url
    if harness.tls:
        config.ssl_ca_cert = str(tls.ca_file)
        config.api_key = {"authorization": TOKEN}
        config.api_key_prefix = {"authorization": "Bearer"}
    return k8s.CoreV1Api(k8s.ApiClient(config))


def run_to_end(resp: Any, timeout: float = 10) -> tuple[str, str]:
    out, err = [], []
    deadline = time.monotonic() + timeout
    while resp.is_open() and time.monotonic() < deadline:
        resp.update(timeout=1)
        out.append(resp.read_stdout(timeout=0))
        err.append(resp.read_stderr(timeout=0))
    assert not resp.is_open(), "the server never closed the websocket"
    return "".join(out), "".join(err)


# ------------------------------------------------------------------------------- exec with the Python client


def test_exec_streams_stdout_stderr_and_exit_code(harness: Harness, tls: Tls) -> None:
    resp = stream(
        core(harness, tls).connect_get_namespaced_pod_exec,
        "web",
        "demo",
        command=["sh", "-c", "echo out; echo err >&2; exit 3"],
        stderr=True,
        stdin=False,
        stdout=True,
        tty=False,
        _preload_content=False,
    )
    assert resp.subprotocol == "v5.channel.k8s.io"  # the client offers v5 then v4 and gets the best
    out, err = run_to_end(resp)
    assert (out, err) == ("out\n", "err\n")
    assert resp.returncode == 3
    assert harness.hooks.sessions[0].proc.args == ["sh", "-c", "echo out; echo err >&2; exit 3"]


def test_exec_preloaded_output_and_success(harness: Harness, tls: Tls) -> None:
    output = stream(
        core(harness, tls).connect_get_namespaced_pod_exec,
        "web",
        "demo",
        command=["sh", "-c", "seq 1 20000"],
        stderr=True,
        stdin=False,
        stdout=True,
        tty=False,
    )
    # Big enough to span several frames and TLS records.
    assert output == "".join(f"{i}\n" for i in range(1, 20001))


def test_exec_stdin_round_trip_and_v5_close(harness: Harness, tls: Tls) -> None:
    resp = stream(
        core(harness, tls).connect_get_namespaced_pod_exec,
        "web",
        "demo",
        command=["cat"],
        stderr=True,
        stdin=True,
        stdout=True,
        tty=False,
        _preload_content=False,
    )
    resp.write_stdin("hello\n")
    assert resp.readline_stdout(timeout=5) == "hello"
    resp.write_stdin(b"bytes too\n")
    assert resp.readline_stdout(timeout=5) == "bytes too"
    resp.close_channel(0)  # v5: end of stdin, so `cat` exits
    run_to_end(resp)
    assert resp.returncode == 0


def test_exec_v4_protocol(harness: Harness, tls: Tls) -> None:
    resp = stream(
        core(harness, tls).connect_get_namespaced_pod_exec,
        "web",
        "demo",
        command=["sh", "-c", "read line; echo got $line; exit 7"],
        stderr=True,
        stdin=True,
        stdout=True,
        tty=False,
        _preload_content=False,
        _headers={"sec-websocket-protocol": "v4.channel.k8s.io"},
    )
    assert resp.subprotocol == "v4.channel.k8s.io"
    resp.write_stdin("x\n")
    out, _ = run_to_end(resp)
    assert out == "got x\n"
    assert resp.returncode == 7


def test_exec_session_ends_when_a_silent_clients_leaves(harness: Harness, tls: Tls) -> None:
    api = core(harness, tls)
    resp = stream(
        api.connect_get_namespaced_pod_exec,
        "web",
        "demo",
        command=["sleep", "60"],
        stderr=True,
        stdin=False,
        stdout=True,
        tty=False,
        _preload_content=False,
    )
    wait_for(lambda: len(harness.hooks.sessions) == 1, what="the exec session")
    resp.close()  # a proper websocket close
    assert harness.hooks.sessions[0].killed.wait(5)
    assert harness.finished.get(timeout=5) == ("exec", "web")

    resp = stream(
        api.connect_get_namespaced_pod_exec,
        "web",
        "demo",
        command=["sleep", "60"],
        stderr=True,
        stdin=True,
        stdout=True,
        tty=False,
        _preload_content=False,
    )
    wait_for(lambda: len(harness.hooks.sessions) == 2, what="the second exec session")
    resp.sock.sock.shutdown(socket.SHUT_RDWR)  # the client vanishes without a close frame
    resp.sock.sock.close()
    assert harness.hooks.sessions[1].killed.wait(5)
    assert harness.finished.get(timeout=5) == ("exec", "web")


def test_kubelet_refusals_arrive_on_channel_3(harness: Harness, tls: Tls) -> None:
    api = core(harness, tls)
    for pod, container, code in (("nope", None, 404), ("web", "sidecar", 400), ("pair", None, 400)):
        resp = stream(
            api.connect_get_namespaced_pod_exec,
            pod,
            "demo",
            command=["true"],
            container=container,
            stderr=True,
            stdin=False,
            stdout=True,
            tty=False,
            _preload_content=False,
        )
        assert run_to_end(resp) == ("", "")
        status = json.loads(resp.read_channel(3))
        assert (status["status"], status["code"]) == ("Failure", code)
    assert harness.hooks.sessions == []


# ------------------------------------------------------------------------------------ exec, frame by frame


def raw_socket(harness: Harness, tls: Tls, protocols: Sequence[str], path: str) -> websocket.WebSocket:
    ws = websocket.WebSocket(sslopt={"ca_certs": str(tls.ca_file)} if harness.tls else {})
    headers = [f"Authorization: Bearer {harness.token}"] if harness.token else []
    url = harness.url.replace("http", "ws", 1) + path
    ws.connect(url, subprotocols=list(protocols), header=headers)  # type: ignore[no-untyped-call]
    return ws


def frames(ws: websocket.WebSocket) -> tuple[list[tuple[int, bytes]], int | None]:
    """Data frames (opcode, payload) until the server's close frame, and the close code."""
    got: list[tuple[int, bytes]] = []
    ws.settimeout(10)
    while True:
        opcode, frame = ws.recv_data_frame(True)
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            return got, int.from_bytes(frame.data[:2], "big") if len(frame.data) >= 2 else None
        got.append((opcode, bytes(frame.data)))


EXEC = "/api/v1/namespaces/demo/pods/web/exec?command=sh&command=-c&command={}&stdin={}&stdout=true&stderr={}"


def test_channel_3_status_and_close_handshake(harness: Harness, tls: Tls) -> None:
    ws = raw_socket(harness, tls, ["v4.channel.k8s.io"], EXEC.format("echo%20hi%3Bexit%20300", "false", "true"))
    assert ws.subprotocol == "v4.channel.k8s.io"
    got, code = frames(ws)
    assert code == 1000
    assert (websocket.ABNF.OPCODE_BINARY, b"\x01hi\n") in got
    _, last = got[-1]
    assert last[0] == 3
    # `exit 300` is 44 to the shell: the exit code a client can parse (0..255).
    assert json.loads(last[1:]) == {
        "metadata": {},
        "status": "Failure",
        "message": "command terminated with non-zero exit code: 44",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": "44"}]},
    }
    ws.close()

    ws = raw_socket(harness, tls, ["v5.channel.k8s.io"], EXEC.format("true", "false", "true"))
    got, code = frames(ws)
    assert code == 1000 and got[-1][1] == b'\x03{"metadata": {}, "status": "Success"}'
    ws.close()


def test_resize_stderr_dropped_and_base64(harness: Harness, tls: Tls) -> None:
    # stderr=false: no channel 2 at all. A resize reaches the session.
    ws = raw_socket(
        harness, tls, ["v5.channel.k8s.io"], EXEC.format("read%20x%3Becho%20$x%3Becho%20e%3E%262", "true", "false")
    )
    ws.send_binary(b'\x04{"Width":120,"Height":40}')
    ws.send_binary(b"\x00go\n")
    got, code = frames(ws)
    assert [payload[0] for _, payload in got] == [1, 3] and got[0][1] == b"\x01go\n" and code == 1000
    assert harness.hooks.sessions[-1].resizes == [(120, 40)]
    ws.close()

    ws = raw_socket(harness, tls, ["bogus", "v4.base64.channel.k8s.io"], EXEC.format("cat", "true", "true"))
    assert ws.subprotocol == "v4.base64.channel.k8s.io"
    ws.send("0" + base64.b64encode(b"abc\n").decode())
    opcode, frame = ws.recv_data_frame(True)
    assert opcode == websocket.ABNF.OPCODE_TEXT and frame.data == b"1" + base64.b64encode(b"abc\n")
    ws.close()  # v4 cannot end stdin: leaving ends the session
    wait_for(lambda: harness.hooks.sessions[-1].killed.is_set(), what="the session to be killed")


def test_v5_fragments_and_pings(harness: Harness, tls: Tls) -> None:
    ws = raw_socket(harness, tls, ["v5.channel.k8s.io"], EXEC.format("cat", "true", "true"))
    ws.ping(b"are you there")
    opcode, frame = ws.recv_data_frame(True)
    assert opcode == websocket.ABNF.OPCODE_PONG and frame.data == b"are you there"
    # One stdin message in three frames.
    ws.send_frame(websocket.ABNF(0, 0, 0, 0, websocket.ABNF.OPCODE_BINARY, 1, b"\x00ab"))
    ws.send_frame(websocket.ABNF(0, 0, 0, 0, websocket.ABNF.OPCODE_CONT, 1, b"cd"))
    ws.send_frame(websocket.ABNF(1, 0, 0, 0, websocket.ABNF.OPCODE_CONT, 1, b"ef\n"))
    ws.send_binary(b"\xff\x00")  # v5: close stdin
    got, code = frames(ws)
    assert b"".join(p[1:] for _, p in got if p[0] == 1) == b"abcdef\n"
    assert got[-1][1] == b'\x03{"metadata": {}, "status": "Success"}' and code == 1000
    ws.close()


def test_runtime_error_after_upgrade_is_a_failure_on_channel_3(harness: Harness, tls: Tls) -> None:
    ws = raw_socket(harness, tls, ["v5.channel.k8s.io"], "/api/v1/namespaces/demo/pods/broken/exec?command=true")
    got, code = frames(ws)
    status = json.loads(got[-1][1][1:])
    assert got[-1][1][0] == 3 and code == 1000
    assert (status["status"], status["code"], status["reason"]) == ("Failure", 500, "InternalError")
    assert status["message"] == "container runtime went away"
    assert harness.hooks.sessions[0].killed.is_set()
    ws.close()

    # Before v4 the error channel carries just the text.
    ws = raw_socket(harness, tls, ["channel.k8s.io"], EXEC.format("exit%202", "false", "true"))
    got, code = frames(ws)
    assert got[-1][1] == b"\x03command terminated with non-zero exit code: 2" and code == 1000
    ws.close()


def request_raw(
    harness: Harness, tls: Tls, method: str, path: str, headers: dict[str, str]
) -> tuple[int, dict[str, str], bytes]:
    if harness.tls:
        context = ssl.create_default_context(cafile=str(tls.ca_file))
        connection: http.client.HTTPConnection = http.client.HTTPSConnection(
            "127.0.0.1", harness.server_address[1], context=context, timeout=10
        )
        headers = {"Authorization": f"Bearer {harness.token}", **headers}
    else:
        connection = http.client.HTTPConnection("127.0.0.1", harness.server_address[1], timeout=10)
    try:
        connection.request(method, path, headers=headers)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def test_exec_refuses_what_is_not_a_channel_websocket(harness: Harness, tls: Tls) -> None:
    path = "/api/v1/namespaces/demo/pods/web/exec?command=true"
    status, _, body = request_raw(harness, tls, "POST", path, {"Connection": "Upgrade", "Upgrade": "SPDY/3.1"})
    assert status == 400 and json.loads(body)["message"].startswith("Upgrade request required")
    handshake = {
        "Connection": "keep-alive, Upgrade",
        "Upgrade": "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": base64.b64encode(b"0123456789abcdef").decode(),
    }
    status, _, body = request_raw(harness, tls, "GET", path, {**handshake, "Sec-WebSocket-Protocol": "chat, mqtt"})
    assert status == 403 and json.loads(body)["reason"] == "Forbidden"
    status, headers, _ = request_raw(harness, tls, "GET", path, {**handshake, "Sec-WebSocket-Version": "8"})
    assert status == 400 and headers["sec-websocket-version"] == "13"
    status, _, _ = request_raw(harness, tls, "GET", path, {**handshake, "Sec-WebSocket-Key": "short"})
    assert status == 400
    assert harness.hooks.sessions == []


# ------------------------------------------------------------------------------------------------------ logs


def test_logs(harness: Harness, tls: Tls) -> None:
    api = core(harness, tls)
    assert api.read_namespaced_pod_log("web", "demo") == "line 1\nline 2\nline 3\n"
    assert api.read_namespaced_pod_log("web", "demo", tail_lines=1) == "line 3\n"
    for pod, container, code in (("nope", None, 404), ("pair", None, 400), ("web", "x", 400)):
        with pytest.raises(ApiException) as raised:
            api.read_namespaced_pod_log(pod, "demo", container=container)
        assert raised.value.status == code and json.loads(raised.value.body or "")["code"] == code


def follow_log(harness: Harness, tls: Tls) -> urllib3.HTTPResponse:
    # Without preloading the generated method returns the raw urllib3 response, whatever its annotation says.
    raw = core(harness, tls).read_namespaced_pod_log("web", "demo", follow=True, _preload_content=False)
    return cast(urllib3.HTTPResponse, raw)


def test_logs_follow_streams_as_lines_come(harness: Harness, tls: Tls) -> None:
    resp = follow_log(harness, tls)
    assert resp.headers["Content-Type"] == "text/plain"
    assert resp.headers["Transfer-Encoding"] == "chunked"
    lines = resp.stream(64)
    seen = b""
    while seen.count(b"\n") < 3:
        seen += next(lines)  # arrives before the log ends: it was flushed
    assert seen == b"line 1\nline 2\nline 3\n"
    harness.hooks.follow_release.set()
    assert b"".join(lines) == b"after release\n"
    assert harness.hooks.follow_closed.is_set()


def test_logs_follow_ends_when_the_client_leaves(harness: Harness, tls: Tls) -> None:
    resp = follow_log(harness, tls)
    assert next(resp.stream(64)).startswith(b"line 1")
    resp.close()
    # The log is silent, yet the handler notices the departure and returns.
    assert harness.finished.get(timeout=5) == ("log", "web")
    harness.hooks.follow_release.set()  # the next line lets the kubelet's iterator be closed
    assert harness.hooks.follow_closed.wait(5)


def test_logs_follow_notices_a_tls_close_notify(tls: Tls) -> None:
    # A TLS client that says goodbye properly (close_notify alert, as Go's tls.Conn.Close sends) before any FIN.
    for server in serve(tls.server):
        raw = socket.create_connection(("127.0.0.1", server.server_address[1]), timeout=10)
        sock = ssl.create_default_context(cafile=str(tls.ca_file)).wrap_socket(raw, server_hostname="127.0.0.1")
        path = "/api/v1/namespaces/demo/pods/web/log?follow=true"
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode())
        received = b""
        while b"line 3" not in received:
            received += sock.recv(4096)
        sock.settimeout(1)
        with contextlib.suppress(OSError):
            sock.unwrap()  # sends close_notify; the TCP connection stays open
        assert server.finished.get(timeout=5) == ("log", "web")
        raw.close()


def test_logs_follow_error_raised_on_first_read_is_a_status(harness: Harness, tls: Tls) -> None:
    with pytest.raises(ApiException) as raised:
        core(harness, tls).read_namespaced_pod_log("vanishing", "demo", follow=True)
    assert raised.value.status == 404


class Http10Connection(http.client.HTTPConnection):
    _http_vsn = 10
    _http_vsn_str = "HTTP/1.0"


def test_logs_follow_over_http_1_0_ends_with_the_connection() -> None:
    for server in serve(None):
        server.hooks.follow_release.set()
        connection = Http10Connection("127.0.0.1", server.server_address[1], timeout=10)
        connection.request("GET", "/api/v1/namespaces/demo/pods/web/log?follow=true")
        response = connection.getresponse()
        assert response.getheader("Transfer-Encoding") is None
        assert response.read() == b"line 1\nline 2\nline 3\nafter release\n"
        connection.close()


# ----------------------------------------------------------------------------------------------------- proxy


def test_proxy_with_the_python_client(harness: Harness, tls: Tls) -> None:
    api = core(harness, tls)
    body = api.connect_get_namespaced_pod_proxy_with_path("web:9650", "demo", "metrics")
    assert body == 'keepalived_vrrp_state{iname="VI_1"} 2\n'
    call = harness.hooks.proxied[-1]
    assert (call["pod"], call["port"], call["path"], call["method"]) == ("web", 9650, "/metrics", "GET")
    names = {name.lower() for name, _ in call["headers"]}
    assert "authorization" not in names and "host" not in names
    assert ("X-Forwarded-For", "127.0.0.1") in call["headers"]


def test_proxy_filters_hop_by_hop_headers_both_ways(harness: Harness, tls: Tls) -> None:
    status, headers, body = request_raw(
        harness,
        tls,
        "GET",
        "/api/v1/namespaces/demo/pods/web:9650/proxy/metrics?x=1",
        {
            "Connection": "keep-alive, X-Client-Private",
            "X-Client-Private": "1",
            "Keep-Alive": "300",
            "TE": "trailers",
            "Accept": "text/plain",
            "Authorization": f"Bearer {harness.token or 'for-the-api-server'}",
        },
    )
    assert status == 200 and body == b'keepalived_vrrp_state{iname="VI_1"} 2\n'
    assert headers["content-length"] == str(len(body)) and headers["x-pod"] == "web"
    assert "x-pod-private" not in headers and "keep-alive" not in headers and "transfer-encoding" not in headers
    sent = {name.lower(): value for name, value in harness.hooks.proxied[-1]["headers"]}
    assert harness.hooks.proxied[-1]["path"] == "/metrics?x=1"
    assert sent["accept"] == "text/plain"
    assert not {"connection", "x-client-private", "keep-alive", "te", "authorization"} & set(sent)

    status, _, body = request_raw(harness, tls, "GET", "/api/v1/namespaces/demo/pods/nope:80/proxy/", {})
    assert status == 404 and json.loads(body)["reason"] == "NotFound"
    status, _, body = request_raw(harness, tls, "GET", "/api/v1/namespaces/demo/pods/web:1/proxy/", {})
    assert status == 503 and "connection refused" in json.loads(body)["message"]


# --------------------------------------------------------------------------------------------------- kubectl


@pytest.fixture
def kubeconfig(tls: Tls, tmp_path: Path) -> Iterator[tuple[Harness, Path]]:
    if KUBECTL is None:
        pytest.skip("kubectl is not installed")
    for server in serve(tls.server):
        path = tmp_path / "kubeconfig"
        path.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [
                        {
                            "name": "lab",
                            "cluster": {
                                "server": server.url,
                                "certificate-authority-data": base64.b64encode(tls.ca_pem).decode(),
                            },
                        }
                    ],
                    "users": [{"name": "lab", "user": {"token": TOKEN}}],
                    "contexts": [{"name": "lab", "context": {"cluster": "lab", "user": "lab", "namespace": "demo"}}],
                    "current-context": "lab",
                }
            )
        )
        path.chmod(0o600)
        yield server, path


def kubectl(
    config: Path, *args: str, stdin: bytes | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[bytes]:
    assert KUBECTL is not None
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(config.parent), "KUBECONFIG": str(config)}
    return subprocess.run([KUBECTL, *args], input=stdin, capture_output=True, timeout=timeout, env=env, check=False)


def test_kubectl_exec_uses_v5_websocket(kubeconfig: tuple[Harness, Path]) -> None:
    server, config = kubeconfig
    done = kubectl(config, "exec", "web", "--", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (done.stdout, done.returncode) == (b"out\n", 3)
    assert b"err\n" in done.stderr and b"command terminated with exit code 3" in done.stderr
    upgrade = next(h for m, p, h in server.seen if "/exec?" in p)
    assert upgrade["upgrade"].lower() == "websocket"
    assert upgrade["sec-websocket-protocol"].split(",")[0].strip() == "v5.channel.k8s.io"
    assert upgrade["authorization"] == f"Bearer {TOKEN}"
    # No SPDY fallback happened: exactly one exec request.
    assert sum("/exec?" in p for _, p, _ in server.seen) == 1

    done = kubectl(config, "exec", "-i", "web", "--", "cat", stdin=b"through stdin\n")
    assert (done.stdout, done.returncode) == (b"through stdin\n", 0), done.stderr

    done = kubectl(config, "exec", "nope", "--", "true")
    assert done.returncode != 0 and b'pods "nope" not found' in done.stderr
    # Both directions at once over TLS: 4 MiB in through stdin while it comes back out.
    payload = os.urandom(3 * 1024 * 1024).hex().encode()[: 4 * 1024 * 1024]
    done = kubectl(config, "exec", "-i", "web", "--", "cat", stdin=payload)
    assert done.returncode == 0 and done.stdout == payload, done.stderr

    # A pod the kubelet does not know although storage has it: the kubelet's 404 reaches the user, on channel 3,
    # with no retry over SPDY.
    server.seen.clear()
    done = kubectl(config, "exec", "ghost", "--", "true")
    assert done.returncode != 0 and b'pods "ghost" not found' in done.stderr, done.stderr
    assert [m for m, p, _ in server.seen if "/exec?" in p] == ["GET"]


def test_kubectl_logs_follow(kubeconfig: tuple[Harness, Path]) -> None:
    server, config = kubeconfig
    assert kubectl(config, "logs", "web").stdout == b"line 1\nline 2\nline 3\n"
    process = subprocess.Popen(
        [KUBECTL or "kubectl", "logs", "-f", "web"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={"PATH": os.environ.get("PATH", ""), "HOME": str(config.parent), "KUBECONFIG": str(config)},
    )
    try:
        assert process.stdout is not None
        assert [process.stdout.readline() for _ in range(3)] == [b"line 1\n", b"line 2\n", b"line 3\n"]
        server.hooks.follow_release.set()
        assert process.stdout.readline() == b"after release\n"
        assert process.wait(10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(5)
