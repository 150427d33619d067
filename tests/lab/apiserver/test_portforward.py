"""`pods/portforward` against real clients: kubectl (the venv's 1.37 and older releases) over SPDY, the official
Python client over websocket channels, and a SPDY client built on the lab's own codec, to look at what kubectl
hides (replies, the error stream, pings, resets).

The pod's port is a real HTTP server on 127.0.0.1 and the hook a real connection to it: only the network
namespace differs from the lab's kubelet (tests/lab/test_kubectl_lab.py forwards into a lab pod).
"""

from __future__ import annotations

import base64
import contextlib
import errno
import http.server
import re
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import websocket  # websocket-client, the Python client's transport: to speak the base64 form it never uses
from kubernetes import client as k8s
from kubernetes.stream import portforward

from kalab.lab.apiserver import spdy
from kalab.lab.apiserver.errors import ApiError
from kalab.lab.apiserver.hooks import ExecRequest, ExecSession, LogRequest, ProxyResponse
from kalab.lab.apiserver.server import RunningServer
from tests.lab.apiserver.api_kit import (
    Kubectl,
    make_kubectl,
    official_client,
    raw_request,
    running_server,
    seeded_store,
)
from tests.support.waiting import stop_process

POD_PORT = 9650
ECHO_PORT = 7000
# Before 1.31 kubectl upgrades to SPDY at once; from 1.31 it tries a websocket tunnel first and falls back.
OTHER_KUBECTLS = [Path(f"/usr/lib/google-cloud-sdk/bin/kubectl.{v}") for v in ("1.27", "1.30", "1.33")]
WAIT = 20.0  # every wait on a client is bounded by this


class _Metrics(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        body = f"keepalived_up 1\n# path {self.path}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class LoopbackHooks:
    """The kubelet's port forward, with 127.0.0.1 standing in for the pod's namespace: `ports` maps pod ports to
    the local ports that serve them; any other port refuses, as a closed port does."""

    def __init__(self, ports: dict[int, int]) -> None:
        self.ports = ports
        self.connections: list[socket.socket] = []

    def port_forward(self, namespace: str, pod: str, port: int) -> socket.socket:
        if pod != "exporter":
            raise ApiError(404, "NotFound", f'pod "{pod}" is not running on its node')
        local = self.ports.get(port)
        if local is None:
            raise OSError(errno.ECONNREFUSED, f"failed to connect to localhost:{port} inside namespace 'test'")
        sock = socket.create_connection(("127.0.0.1", local), timeout=5)
        sock.settimeout(None)
        self.connections.append(sock)
        return sock

    def logs(self, request: LogRequest) -> Iterator[bytes]:
        raise ApiError(400, "BadRequest", "no logs here")

    def exec(self, request: ExecRequest) -> ExecSession:
        raise ApiError(400, "BadRequest", "no exec here")

    def proxy(
        self, namespace: str, pod: str, port: int, path: str, method: str, headers: Any, body: bytes
    ) -> ProxyResponse:
        raise ApiError(400, "BadRequest", "no proxy here")


@pytest.fixture(scope="module")
def metrics() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Metrics)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(scope="module")
def echo() -> Iterator[int]:
    """A port that sends back whatever it gets, and closes once the client has closed its side."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def answer(conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            conn.settimeout(WAIT)
            while data := conn.recv(65536):
                conn.sendall(data)

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=answer, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()


@pytest.fixture(scope="module")
def served(
    metrics: int, echo: int, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RunningServer, LoopbackHooks]]:
    store = seeded_store()
    pods = store.registry.by_key("/pods")
    for name, node in (("exporter", "master-0"), ("pending", None)):
        spec: dict[str, Any] = {"containers": [{"name": "exporter", "image": "quay.io/x/exporter:1"}]}
        if node:
            spec["nodeName"] = node
        store.create(pods, {"metadata": {"name": name, "namespace": "demo"}, "spec": spec})
        phase = "Running" if node else "Pending"
        current = store.get(pods, "demo", name)
        current["status"] = {"phase": phase}
        store.update(pods, current, subresource="status")
    hooks = LoopbackHooks({POD_PORT: metrics, ECHO_PORT: echo})
    with running_server(store, tmp_path_factory.mktemp("pf"), hooks) as server:
        yield server, hooks


# ------------------------------------------------------------------------------------------------- kubectl


@contextlib.contextmanager
def port_forward(kubectl: Kubectl, binary: str | None, *args: str) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """`kubectl port-forward` running, with the local port it listens on; ended by PID afterwards."""
    command = kubectl.command("port-forward", *args)
    if binary is not None:
        command[0] = binary
    process = subprocess.Popen(command, env=kubectl.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        local = _forwarding_port(process)
        yield process, local
    finally:
        stop_process(process)


def _forwarding_port(process: subprocess.Popen[str]) -> int:
    """Reads kubectl's `Forwarding from 127.0.0.1:N -> M` line (bounded: a timer ends a silent kubectl)."""
    assert process.stdout is not None
    timer = threading.Timer(WAIT, process.kill)
    timer.start()
    try:
        for line in process.stdout:
            found = re.match(r"Forwarding from 127\.0\.0\.1:(\d+) ->", line)
            if found:
                return int(found.group(1))
    finally:
        timer.cancel()
    stderr = process.stderr.read() if process.stderr else ""
    raise AssertionError(f"kubectl port-forward never listened: {stderr}")


def http_get(port: int, path: str = "/metrics") -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def kubectls() -> list[str | None]:
    return [None, *(str(p) for p in OTHER_KUBECTLS if p.exists())]


@pytest.mark.parametrize("binary", kubectls(), ids=lambda b: "venv" if b is None else Path(b).name)
def test_kubectl_port_forward_reaches_the_pod_port(
    served: tuple[RunningServer, LoopbackHooks], binary: str | None, tmp_path: Path
) -> None:
    server, _ = served
    kubectl = make_kubectl(server, tmp_path)
    with port_forward(kubectl, binary, "-n", "demo", "pod/exporter", f":{POD_PORT}") as (process, local):
        # Several connections over the one SPDY session, one after the other.
        for path in ("/metrics", "/again"):
            status, body = http_get(local, path)
            assert status == 200
            assert body == f"keepalived_up 1\n# path {path}\n".encode()
        assert process.poll() is None, "kubectl port-forward stopped after the connections"


def test_kubectl_port_forward_carries_megabytes_both_ways(
    served: tuple[RunningServer, LoopbackHooks], tmp_path: Path
) -> None:
    # More than any SPDY flow-control window: nothing may wait for WINDOW_UPDATEs neither side sends.
    payload = bytes(range(256)) * (16 * 1024)  # 4 MiB
    kubectl = make_kubectl(served[0], tmp_path)
    received = bytearray()
    with (
        port_forward(kubectl, None, "-n", "demo", "pod/exporter", f":{ECHO_PORT}") as (_, local),
        socket.create_connection(("127.0.0.1", local), timeout=WAIT) as sock,
    ):

        def read_back() -> None:
            while chunk := sock.recv(1 << 20):
                received.extend(chunk)

        reader = threading.Thread(target=read_back, daemon=True)
        reader.start()
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)  # half-close: the echo still answers, then closes
        reader.join(timeout=WAIT * 3)
        assert not reader.is_alive(), f"{len(received)} of {len(payload)} bytes came back"
    assert bytes(received) == payload


def test_kubectl_port_forward_reports_a_closed_port(
    served: tuple[RunningServer, LoopbackHooks], tmp_path: Path
) -> None:
    server, _ = served
    kubectl = make_kubectl(server, tmp_path)
    with port_forward(kubectl, None, "-n", "demo", "pod/exporter", ":9999") as (process, local):
        with socket.create_connection(("127.0.0.1", local), timeout=WAIT) as sock, contextlib.suppress(OSError):
            sock.sendall(b"GET / HTTP/1.1\r\n\r\n")
            assert sock.recv(65536) == b""  # nothing comes back: the connection just ends
        # As against a real kubelet, kubectl prints the error stream's message and gives up the session.
        _, stderr = process.communicate(timeout=WAIT)
    assert "error forwarding port 9999 to pod exporter" in stderr
    assert "failed to connect to localhost:9999" in stderr


def test_kubectl_port_forward_refuses_a_pod_that_is_not_running(
    served: tuple[RunningServer, LoopbackHooks], tmp_path: Path
) -> None:
    server, _ = served
    done = make_kubectl(server, tmp_path)("port-forward", "-n", "demo", "pod/pending", ":80", check=False)
    assert done.returncode != 0
    assert "pod is not running" in done.stderr


# ---------------------------------------------------------------------------------------- the Python client


def _read_until(sock: Any, end: bytes) -> bytes:
    data = b""
    while not data.endswith(end):
        chunk = sock.recv(65536)
        assert chunk, f"the socket ended after {data!r}"
        data += chunk
    return data


def test_python_client_forwards_over_websocket_channels(served: tuple[RunningServer, LoopbackHooks]) -> None:
    with official_client(served[0]) as api_client:
        api = k8s.CoreV1Api(api_client)
        forward = portforward(
            api.connect_get_namespaced_pod_portforward, "exporter", "demo", ports=f"{POD_PORT},{ECHO_PORT},9999"
        )
        try:
            metrics = forward.socket(POD_PORT)
            metrics.settimeout(WAIT)
            metrics.sendall(b"GET /py HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            # v4 channels cannot say that one port's connection ended: the socket stays open until the session ends.
            answer = _read_until(metrics, b"# path /py\n")
            assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"# path /py\n")
            echo = forward.socket(ECHO_PORT)
            echo.settimeout(WAIT)
            echo.sendall(b"x" * 300_000)
            received = b""
            while len(received) < 300_000:
                chunk = echo.recv(65536)
                assert chunk, f"the echo ended after {len(received)} bytes"
                received += chunk
            assert received == b"x" * 300_000
            # A port nothing listens on: the kubelet's message arrives on its error channel.
            deadline = time.monotonic() + WAIT
            while forward.error(9999) is None:
                assert time.monotonic() < deadline, "no error for the closed port"
                time.sleep(0.05)
            assert forward.error(9999).startswith("error forwarding port 9999 to pod exporter, uid ")
        finally:
            forward.close()


def test_the_websocket_closes_once_every_port_is_done(served: tuple[RunningServer, LoopbackHooks]) -> None:
    with official_client(served[0]) as api_client:
        api = k8s.CoreV1Api(api_client)
        forward = portforward(api.connect_get_namespaced_pod_portforward, "exporter", "demo", ports="9999")
        try:
            deadline = time.monotonic() + WAIT
            while forward.connected:
                assert time.monotonic() < deadline, "the session outlived its only connection"
                time.sleep(0.05)
            assert "failed to connect to localhost:9999" in (forward.error(9999) or "")
        finally:
            forward.close()


def test_base64_channels(served: tuple[RunningServer, LoopbackHooks]) -> None:
    server = served[0]
    context = ssl.create_default_context(cafile=str(server.ca_file))
    ws = websocket.create_connection(
        f"wss://{server.host}:{server.port}/api/v1/namespaces/demo/pods/exporter/portforward?ports={POD_PORT}",
        header=[f"Authorization: Bearer {server.token}"],
        subprotocols=["v4.base64.channel.k8s.io"],
        sslopt={"context": context},
        timeout=WAIT,
    )
    try:
        assert ws.subprotocol == "v4.base64.channel.k8s.io"
        port_bytes = base64.b64encode(POD_PORT.to_bytes(2, "little")).decode()
        assert sorted([ws.recv(), ws.recv()]) == [f"0{port_bytes}", f"1{port_bytes}"]
        request = b"GET /b64 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        ws.send("0" + base64.b64encode(request).decode())
        answer = b""
        while not answer.endswith(b"# path /b64\n"):
            message = ws.recv()
            assert isinstance(message, str) and message[0] == "0", message
            answer += base64.b64decode(message[1:])
        assert answer.startswith(b"HTTP/1.1 200 ")
    finally:
        ws.close()


# ------------------------------------------------------------------------------------------ the protocol itself


class SpdyClient:
    """What client-go's SPDY connection does, on the lab's codec: enough to see every frame the server sends."""

    def __init__(
        self,
        server: RunningServer,
        pod: str = "exporter",
        protocol: str = "portforward.k8s.io",
        ahead: Sequence[spdy.Frame] = (),
    ) -> None:
        context = ssl.create_default_context(cafile=str(server.ca_file))
        raw = socket.create_connection((server.host, server.port), timeout=WAIT)
        self.sock = context.wrap_socket(raw, server_hostname=server.host)
        self.codec = spdy.Codec()
        # `ahead`: frames sent in the same write as the upgrade request, before any answer.
        self.sock.sendall(
            (
                f"POST /api/v1/namespaces/demo/pods/{pod}/portforward HTTP/1.1\r\nHost: {server.host}\r\n"
                f"Authorization: Bearer {server.token}\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
                f"X-Stream-Protocol-Version: {protocol}\r\nContent-Length: 0\r\n\r\n"
            ).encode()
            + b"".join(self.codec.encode(frame) for frame in ahead)
        )
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(1)
            assert chunk, "the server closed during the upgrade"
            head += chunk
        self.head = head.decode()
        self.pending: list[spdy.Frame] = []

    def send(self, *frames: spdy.Frame) -> None:
        self.sock.sendall(b"".join(self.codec.encode(f) for f in frames))

    def next(self) -> spdy.Frame:
        deadline = time.monotonic() + WAIT
        while not self.pending:
            assert time.monotonic() < deadline, "no frame from the server"
            data = self.sock.recv(65536)
            assert data, "the server closed the connection"
            self.pending += self.codec.feed(data)
        return self.pending.pop(0)

    def open_pair(self, first_id: int, port: int, request_id: str) -> None:
        for stream_id, kind in ((first_id, "error"), (first_id + 2, "data")):
            headers = {"streamtype": [kind], "port": [str(port)], "requestid": [request_id]}
            self.send(spdy.SynStream(stream_id, headers))
            assert self.next() == spdy.SynReply(stream_id, {})
            if kind == "error":
                self.send(spdy.DataFrame(stream_id, fin=True))  # client-go closes its side of the error stream

    def read_stream(self, stream_id: int) -> bytes:
        """Data on one stream until its FIN (frames for other streams are kept for later)."""
        data, others = b"", list[spdy.Frame]()
        while True:
            frame = self.next()
            if isinstance(frame, spdy.DataFrame) and frame.stream_id == stream_id:
                data += frame.data
                if frame.fin:
                    self.pending[:0] = others
                    return data
            else:
                others.append(frame)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


@pytest.fixture
def spdy_client(served: tuple[RunningServer, LoopbackHooks]) -> Iterator[SpdyClient]:
    client = SpdyClient(served[0])
    try:
        yield client
    finally:
        client.close()


def test_upgrade_answer(spdy_client: SpdyClient) -> None:
    lines = spdy_client.head.split("\r\n")
    assert lines[0] == "HTTP/1.1 101 Switching Protocols"
    assert "Upgrade: SPDY/3.1" in lines
    assert "X-Stream-Protocol-Version: portforward.k8s.io" in lines


def test_frames_sent_with_the_upgrade_request_are_not_lost(served: tuple[RunningServer, LoopbackHooks]) -> None:
    client = SpdyClient(served[0], ahead=[spdy.Ping(3)])
    try:
        assert client.head.startswith("HTTP/1.1 101 ")
        assert client.next() == spdy.Ping(3)  # handed over with the socket after the 101, and answered
    finally:
        client.close()


def test_two_connections_at_once_and_pings(spdy_client: SpdyClient) -> None:
    spdy_client.send(spdy.Ping(1))
    assert spdy_client.next() == spdy.Ping(1)
    spdy_client.open_pair(1, POD_PORT, "0")
    spdy_client.open_pair(5, POD_PORT, "1")
    for data_id, path in ((7, "/second"), (3, "/first")):
        request = f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
        spdy_client.send(spdy.DataFrame(data_id, request), spdy.DataFrame(data_id, fin=True))
        answer = spdy_client.read_stream(data_id)
        assert answer.startswith(b"HTTP/1.1 200 ")
        assert answer.endswith(f"# path {path}\n".encode())
        # The error stream ends empty: the connection went well.
        assert spdy_client.read_stream(data_id - 2) == b""


def test_a_refused_port_is_reported_on_the_error_stream(spdy_client: SpdyClient) -> None:
    spdy_client.open_pair(1, 9999, "0")
    message = spdy_client.read_stream(1).decode()
    assert message.startswith("error forwarding port 9999 to pod exporter, uid ")
    assert "failed to connect to localhost:9999" in message
    assert spdy_client.read_stream(3) == b""


def test_streams_without_port_or_type_are_reset(spdy_client: SpdyClient) -> None:
    spdy_client.send(spdy.SynStream(1, {"streamtype": ["data"]}))
    assert spdy_client.next() == spdy.RstStream(1, spdy.CANCEL)
    spdy_client.send(spdy.SynStream(3, {"streamtype": ["stdin"], "port": ["80"]}))
    assert spdy_client.next() == spdy.RstStream(3, spdy.CANCEL)
    spdy_client.send(spdy.DataFrame(41, b"x"))
    assert spdy_client.next() == spdy.RstStream(41, spdy.INVALID_STREAM)


def test_a_client_reset_closes_the_pod_connection(
    served: tuple[RunningServer, LoopbackHooks], spdy_client: SpdyClient
) -> None:
    hooks = served[1]
    before = len(hooks.connections)
    spdy_client.open_pair(1, POD_PORT, "0")
    deadline = time.monotonic() + WAIT
    while len(hooks.connections) == before:
        assert time.monotonic() < deadline, "the hook was never asked for a connection"
        time.sleep(0.05)
    spdy_client.send(spdy.RstStream(3, spdy.CANCEL))
    # The server ends its side of the pod connection: the pod's server sees EOF and closes.
    pod_side = hooks.connections[-1]
    deadline = time.monotonic() + WAIT
    while pod_side.fileno() != -1:
        assert time.monotonic() < deadline, "the pod connection stayed open after the reset"
        time.sleep(0.05)


def test_a_departed_client_closes_its_pod_connections(served: tuple[RunningServer, LoopbackHooks]) -> None:
    hooks = served[1]
    client = SpdyClient(served[0])
    try:
        client.open_pair(1, ECHO_PORT, "0")
        client.send(spdy.DataFrame(3, b"ping"))
        assert client.next() == spdy.DataFrame(3, b"ping")  # the connection is up, and echoing
        pod_side = hooks.connections[-1]
    finally:
        client.close()
    deadline = time.monotonic() + WAIT
    while pod_side.fileno() != -1:
        assert time.monotonic() < deadline, "the pod connection outlived its client"
        time.sleep(0.05)


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        (
            {
                "Connection": "Upgrade",
                "Upgrade": "websocket",
                "Sec-WebSocket-Protocol": "SPDY/3.1+portforward.k8s.io",
                "Sec-WebSocket-Version": "13",
                "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            },
            400,
        ),
        (
            {
                "Connection": "Upgrade",
                "Upgrade": "websocket",
                "Sec-WebSocket-Protocol": "v5.channel.k8s.io",
                "Sec-WebSocket-Version": "13",
                "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            },
            400,
        ),
        ({"Connection": "Upgrade", "Upgrade": "SPDY/3.1"}, 400),
        ({"Connection": "Upgrade", "Upgrade": "SPDY/3.1", "X-Stream-Protocol-Version": "v4.channel.k8s.io"}, 403),
        ({}, 400),
    ],
)
def test_refused_upgrades(served: tuple[RunningServer, LoopbackHooks], headers: dict[str, str], status: int) -> None:
    answer = raw_request(served[0], "GET", "/api/v1/namespaces/demo/pods/exporter/portforward", headers)
    # Any non-101 answer to the websocket attempt is what makes kubectl 1.31+ fall back to SPDY.
    assert answer.status == status
    assert answer.json()["kind"] == "Status"


def test_unknown_and_unscheduled_pods(served: tuple[RunningServer, LoopbackHooks]) -> None:
    upgrade = {"Connection": "Upgrade", "Upgrade": "SPDY/3.1", "X-Stream-Protocol-Version": "portforward.k8s.io"}
    assert raw_request(served[0], "POST", "/api/v1/namespaces/demo/pods/nope/portforward", upgrade).status == 404
    answer = raw_request(served[0], "POST", "/api/v1/namespaces/demo/pods/pending/portforward", upgrade)
    assert answer.status == 400
    assert answer.json()["message"] == "pod pending does not have a host assigned"
