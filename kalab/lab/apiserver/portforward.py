"""`pods/portforward`: the portforward.k8s.io protocol over SPDY/3.1, served as the kubelet serves it.

After the upgrade the client opens, for every connection it forwards, two streams carrying the same `requestID`
and `port` headers: an error stream (`streamType: error`), which it half-closes at once and then reads to its
end, and a data stream (`streamType: data`) carrying the connection's bytes both ways. Each SYN_STREAM gets a
SYN_REPLY; once both streams of a request are there the kubelet (the `port_forward` hook) opens a TCP connection
to the port from inside the pod's network namespace, and bytes are copied until both sides are done. A failure
is written as text on the error stream, worded as the kubelet words it, which kubectl prints and then stops on.

kubectl 1.31 and later first ask for a WebSocket upgrade carrying the same SPDY frames (subprotocol
`SPDY/3.1+portforward.k8s.io`) and fall back to plain SPDY when that upgrade is refused with any non-101 answer.
This server refuses it, as kube-apiserver 1.30 (the release the lab reports) does: its PortForwardWebsockets gate
is alpha and off until 1.31 (kubernetes/kubernetes#125528). Every kubectl speaks the plain SPDY upgrade.

There is no flow control, as in moby/spdystream on both ends of a real cluster: WINDOW_UPDATEs are ignored.

The kubelet also serves port forwarding over the websocket channel protocol (v4.channel.k8s.io and its base64
form), which the official Python client speaks: the ports are named in the query (`?ports=9650`), each gets a
data channel (2i) and an error channel (2i+1), both opened by the server with the port as two little-endian bytes;
there is one connection per port, and the websocket closes once every port's connection has ended.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import select
import socket
import ssl
import struct
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import parse_qs, urlsplit

from wsproto.events import CloseConnection

from kalab.lab.apiserver import spdy, streams
from kalab.lab.apiserver.errors import ApiError, bad_request, forbidden
from kalab.lab.apiserver.hooks import PodHooks
from kalab.lab.apiserver.transport import Exchange

_log = logging.getLogger(__name__)

PROTOCOL: Final = "portforward.k8s.io"
WEBSOCKET_PROTOCOL: Final = "SPDY/3.1+portforward.k8s.io"  # kubectl 1.31+'s tunnel, refused (see above)
# The kubelet's websocket port forward: v4 channels only (no v5 close signal), binary or base64.
CHANNEL_PROTOCOLS: Final = (
    streams.ChannelProtocol("v4.channel.k8s.io", 4, False),
    streams.ChannelProtocol("v4.base64.channel.k8s.io", 4, True),
)

_POLL: Final = 0.2  # how often blocked loops look at whether the session ended
_SEND_TIMEOUT: Final = 30.0  # a client that takes no frame for this long is gone
_RECV_SIZE: Final = 64 * 1024
_CHUNK: Final = 32 * 1024  # bytes per data frame from the pod
_JOIN: Final = 5.0  # how long ending a session waits for each of its connection threads


class _Refused(Exception):
    def __init__(self, error: ApiError) -> None:
        super().__init__(error.message)
        self.error = error


def _tokens(values: Iterable[str]) -> list[str]:
    return [token.strip() for value in values for token in value.split(",") if token.strip()]


def negotiate(handler: Exchange) -> None:
    """Check the upgrade request; `_Refused` with the error kube-apiserver/the kubelet would answer."""
    headers = handler.headers
    upgrade = {t.lower() for t in _tokens(headers.get_all("Upgrade") or [])}
    connection = {t.lower() for t in _tokens(headers.get_all("Connection") or [])}
    if "upgrade" not in connection or "spdy/3.1" not in upgrade:
        raise _Refused(bad_request("Upgrade request required: pods/portforward is served over SPDY/3.1"))
    offered = _tokens(headers.get_all("X-Stream-Protocol-Version") or [])
    if not offered:
        raise _Refused(bad_request("unable to upgrade: X-Stream-Protocol-Version is required"))
    if PROTOCOL not in offered:
        raise _Refused(
            forbidden(
                f"unable to upgrade: unable to negotiate protocol: client supports {offered}, "
                f"server accepts [{PROTOCOL}]"
            )
        )


def serve_port_forward(handler: Exchange, hooks: PodHooks, namespace: str, pod: str, uid: str) -> None:
    """Upgrade the request to SPDY/3.1 (or websocket channels) and forward to the pod until the client leaves."""
    if "websocket" in {t.lower() for t in _tokens(handler.headers.get_all("Upgrade") or [])}:
        _serve_channels(handler, hooks, namespace, pod, uid)
        return
    try:
        negotiate(handler)
    except _Refused as refused:
        streams.write_status(handler, refused.error)
        return
    try:  # the connection is the SPDY session's from here on
        sock, leftover = handler.upgrade(
            [("Connection", "Upgrade"), ("Upgrade", "SPDY/3.1"), ("X-Stream-Protocol-Version", PROTOCOL)]
        )
    except OSError:
        return
    Session(sock, hooks, namespace, pod, uid, leftover).run()


class _Gone(Exception):
    """The client connection is closed or broken."""


class _Transport:
    """The upgraded connection (plain or TLS), shared by the session's reader and its connections' threads.

    An `ssl.SSLSocket` must not be read and written at once, and the codec's deflate state must follow the order
    frames go out in, so encoding, sending and receiving all hold `_io`; the reader waits for readability with
    select() outside the lock and then reads without blocking.
    """

    def __init__(self, sock: socket.socket, leftover: bytes = b"") -> None:
        self.sock = sock
        self.codec = spdy.Codec()
        self._leftover = leftover  # frames the client sent right behind its upgrade request
        self._io = threading.Lock()
        self.closed = False
        sock.settimeout(_SEND_TIMEOUT)

    def send(self, *frames: spdy.Frame) -> None:
        with self._io:
            if self.closed:
                raise _Gone
            try:
                self.sock.sendall(b"".join(self.codec.encode(frame) for frame in frames))
            except OSError as exc:
                self.closed = True
                raise _Gone from exc

    def receive(self, timeout: float) -> list[spdy.Frame]:
        """Frames that arrived within `timeout` ([] if none); `_Gone` once the client closed."""
        if self._leftover:
            with self._io:
                data, self._leftover = self._leftover, b""
                return self.codec.feed(data)
        if not (isinstance(self.sock, ssl.SSLSocket) and self.sock.pending()):
            try:
                readable, _, _ = select.select([self.sock], [], [], timeout)
            except (OSError, ValueError) as exc:
                raise _Gone from exc
            if not readable:
                return []
        with self._io:
            if self.closed:
                raise _Gone
            self.sock.settimeout(0)
            try:
                data = self.sock.recv(_RECV_SIZE)
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                return []  # part of a TLS record, or TLS housekeeping
            except OSError:
                data = b""
            finally:
                self.sock.settimeout(_SEND_TIMEOUT)
            if not data:
                self.closed = True
                raise _Gone
            return self.codec.feed(data)


_EOF: Final = b""  # queued for a connection when the client half-closed its data stream


@dataclass
class _Forward:
    """One forwarded connection: its pair of streams and, once made, the socket to the pod."""

    request_id: str
    port: int
    error_id: int = 0
    data_id: int = 0
    to_pod: queue.SimpleQueue[bytes | None] = field(default_factory=queue.SimpleQueue)  # None: stop now
    started: bool = False
    thread: threading.Thread | None = None
    sock: socket.socket | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    aborted: bool = False


class Session:
    """The SPDY session of one upgraded request: reads frames in the calling thread, one thread per connection."""

    def __init__(
        self, sock: socket.socket, hooks: PodHooks, namespace: str, pod: str, uid: str, leftover: bytes = b""
    ) -> None:
        self.transport = _Transport(sock, leftover)
        self.hooks = hooks
        self.namespace = namespace
        self.pod = pod
        self.uid = uid
        self.streams: dict[int, _Forward] = {}
        self.requests: dict[str, _Forward] = {}
        self.ended = threading.Event()
        self.last_stream = 0

    def run(self) -> None:
        try:
            while not self.ended.is_set():
                for frame in self.transport.receive(_POLL):
                    self._handle(frame)
        except _Gone:
            pass
        except spdy.SpdyError as error:
            _log.info("port forward to %s/%s: %s", self.namespace, self.pod, error)
            with contextlib.suppress(_Gone):
                self.transport.send(spdy.GoAway(self.last_stream, 1))
        finally:
            self.ended.set()
            self._end_all()

    def _end_all(self) -> None:
        # One C-level copy: connection threads drop their entries meanwhile (see _forget).
        forwards = list(self.requests.values())
        for forward in forwards:
            self._abort(forward)
        for forward in forwards:
            if forward.thread is not None:
                forward.thread.join(timeout=_JOIN)

    # -- frames from the client --------------------------------------------------------------------------------

    def _handle(self, frame: spdy.Frame) -> None:
        if isinstance(frame, spdy.SynStream):
            self._open(frame)
        elif isinstance(frame, spdy.DataFrame):
            forward = self.streams.get(frame.stream_id)
            if forward is None:
                self.transport.send(spdy.RstStream(frame.stream_id, spdy.INVALID_STREAM))
            elif frame.stream_id == forward.data_id:
                if frame.data:
                    forward.to_pod.put(frame.data)
                if frame.fin:
                    forward.to_pod.put(_EOF)
            # Anything on the error stream is the client closing its (unused) side.
        elif isinstance(frame, spdy.RstStream):
            forward = self.streams.get(frame.stream_id)
            if forward is not None:
                self._abort(forward)
        elif isinstance(frame, spdy.Ping):
            self.transport.send(frame)  # the client's pings (odd ids) are echoed back
        elif isinstance(frame, spdy.GoAway):
            self.ended.set()
        # SETTINGS, WINDOW_UPDATE, HEADERS: nothing to do.

    def _open(self, frame: spdy.SynStream) -> None:
        self.last_stream = frame.stream_id
        kind = spdy.header(frame.headers, "streamType")
        port_text = spdy.header(frame.headers, "port") or ""
        port = int(port_text) if port_text.isdigit() else 0
        if kind not in ("error", "data") or not 0 < port < 65536:
            # What the kubelet's stream handler does with a stream it cannot use.
            self.transport.send(spdy.RstStream(frame.stream_id, spdy.CANCEL))
            return
        request_id = spdy.header(frame.headers, "requestID")
        if request_id is None:
            # Clients before requestID: the error stream's id names the pair, the data stream follows it.
            request_id = str(frame.stream_id if kind == "error" else frame.stream_id - 2)
        forward = self.requests.get(request_id)
        if forward is None:
            forward = self.requests[request_id] = _Forward(request_id, port)
        if (forward.error_id if kind == "error" else forward.data_id) or forward.port != port:
            self.transport.send(spdy.RstStream(frame.stream_id, spdy.PROTOCOL_ERROR))
            return
        if kind == "error":
            forward.error_id = frame.stream_id
        else:
            forward.data_id = frame.stream_id
        self.streams[frame.stream_id] = forward
        self.transport.send(spdy.SynReply(frame.stream_id, {}))
        if forward.error_id and forward.data_id and not forward.started:
            forward.started = True
            forward.thread = threading.Thread(
                target=self._forward, args=(forward,), name=f"port-forward-{port}", daemon=True
            )
            forward.thread.start()

    def _abort(self, forward: _Forward) -> None:
        """Stop a connection now (the client reset a stream, or the session ended)."""
        with forward.lock:
            forward.aborted = True
            if forward.sock is not None:
                with contextlib.suppress(OSError):
                    forward.sock.shutdown(socket.SHUT_RDWR)
        forward.to_pod.put(None)

    # -- one connection ------------------------------------------------------------------------------------

    def _forward(self, forward: _Forward) -> None:
        try:
            try:
                sock = self.hooks.port_forward(self.namespace, self.pod, forward.port)
            except (ApiError, OSError) as exc:
                reason = exc.message if isinstance(exc, ApiError) else (exc.strerror or str(exc))
                message = f"error forwarding port {forward.port} to pod {self.pod}, uid {self.uid}: {reason}"
                self.transport.send(
                    spdy.DataFrame(forward.error_id, message.encode("utf-8"), fin=True),
                    spdy.DataFrame(forward.data_id, fin=True),
                )
                return
            with forward.lock:
                forward.sock = sock
                aborted = forward.aborted
            try:
                if not aborted:
                    self._copy(forward, sock)
            finally:
                sock.close()
        except _Gone:
            self.ended.set()
        finally:
            self._forget(forward)

    def _copy(self, forward: _Forward, sock: socket.socket) -> None:
        writer = threading.Thread(target=self._to_pod, args=(forward, sock), name="port-forward-in", daemon=True)
        writer.start()
        try:
            while True:
                try:
                    data = sock.recv(_CHUNK)
                except OSError:
                    data = b""
                if not data:
                    break
                self.transport.send(spdy.DataFrame(forward.data_id, data))
            if not forward.aborted:
                # The pod closed its side: so does the data stream, and the error stream ends empty.
                self.transport.send(
                    spdy.DataFrame(forward.data_id, fin=True), spdy.DataFrame(forward.error_id, fin=True)
                )
            # The client may still be sending (a half-closed connection): the writer ends with its FIN or a reset.
            while writer.is_alive() and not self.ended.is_set():
                writer.join(timeout=_POLL)
        finally:
            forward.to_pod.put(None)
            writer.join(timeout=_JOIN)

    def _to_pod(self, forward: _Forward, sock: socket.socket) -> None:
        while True:
            try:
                data = forward.to_pod.get(timeout=_POLL)
            except queue.Empty:
                if self.ended.is_set():
                    return
                continue
            if data is None:
                return
            try:
                if data == _EOF:
                    sock.shutdown(socket.SHUT_WR)
                    return
                sock.sendall(data)
            except OSError:
                return

    def _forget(self, forward: _Forward) -> None:
        # Runs in the connection's thread while the reader may look streams up: dict item removal is atomic.
        self.streams.pop(forward.error_id, None)
        self.streams.pop(forward.data_id, None)
        self.requests.pop(forward.request_id, None)


# -------------------------------------------------------------------------------------------- websocket channels


def _query_ports(path: str) -> list[int]:
    """The `ports` query parameter (repeated or comma-separated), as the kubelet reads its `port` parameter."""
    values = parse_qs(urlsplit(path).query, keep_blank_values=True).get("ports", [])
    if not values:
        # kubectl 1.31+'s SPDY tunnel names no ports: this refusal is what makes it fall back to plain SPDY.
        raise bad_request('query parameter "ports" is required')
    ports = []
    for value in values:
        for text in value.split(","):
            if not text.strip().isdigit() or not 0 < int(text) < 65536:
                raise bad_request(f'unable to parse "{text}" as a port')
            ports.append(int(text))
    return ports


def _serve_channels(handler: Exchange, hooks: PodHooks, namespace: str, pod: str, uid: str) -> None:
    try:
        ports = _query_ports(handler.request.target)
        key, protocol = streams.negotiate(
            handler,
            CHANNEL_PROTOCOLS,
            "Upgrade request required: pods/portforward is served over SPDY/3.1 or websocket",
        )
    except ApiError as error:
        streams.write_status(handler, error)
        return
    except streams.Refused as refused:
        streams.write_status(handler, refused.error, refused.headers)
        return
    try:
        sock, leftover = streams.write_switching_protocols(handler, key, protocol)
    except OSError:
        return
    _ChannelSession(streams.WebSocket(sock, protocol, leftover), hooks, namespace, pod, uid, ports).run()


class _ChannelSession:
    """Websocket port forwarding: this thread reads the client, one thread per port copies from the pod."""

    def __init__(
        self, ws: streams.WebSocket, hooks: PodHooks, namespace: str, pod: str, uid: str, ports: list[int]
    ) -> None:
        self.ws = ws
        self.hooks = hooks
        self.namespace = namespace
        self.pod = pod
        self.uid = uid
        self.ports = ports
        self.to_pod: list[queue.SimpleQueue[bytes | None]] = [queue.SimpleQueue() for _ in ports]
        self.socks: list[socket.socket | None] = [None for _ in ports]
        self.lock = threading.Lock()
        self.gone = threading.Event()  # the client left, or the session is over

    def run(self) -> None:
        threads: list[threading.Thread] = []
        try:
            for index, port in enumerate(self.ports):
                prefix = struct.pack("<H", port)
                self.ws.send_channel(2 * index, prefix)
                self.ws.send_channel(2 * index + 1, prefix)
            threads = [
                threading.Thread(target=self._forward, args=(i, port), name=f"port-forward-{port}", daemon=True)
                for i, port in enumerate(self.ports)
            ]
            for thread in threads:
                thread.start()
            self._read_client(threads)
        except streams.ClientGone:
            pass
        finally:
            self.gone.set()
            with self.lock:
                for sock in self.socks:
                    if sock is not None:
                        with contextlib.suppress(OSError):
                            sock.shutdown(socket.SHUT_RDWR)
            for pending in self.to_pod:
                pending.put(None)
            for thread in threads:
                thread.join(timeout=_JOIN)
            self.ws.close()
            self._await_close()

    def _read_client(self, threads: list[threading.Thread]) -> None:
        for channel, payload in self.ws.channel_messages(lambda: any(thread.is_alive() for thread in threads), _POLL):
            self._dispatch(channel, payload)

    def _await_close(self) -> None:
        """After our close frame, the client's, for a little while (RFC 6455's closing handshake)."""
        with contextlib.suppress(Exception):
            for _ in range(int(_JOIN / _POLL)):
                events = self.ws.receive(_POLL)
                if events is None or any(isinstance(e, CloseConnection) for e in events):
                    return

    def _dispatch(self, channel: int, payload: bytes) -> None:
        # Only data channels carry bytes for the pod; what a client writes on an error channel is dropped.
        if channel % 2 == 0 and channel // 2 < len(self.ports) and payload:
            self.to_pod[channel // 2].put(payload)

    def _forward(self, index: int, port: int) -> None:
        try:
            sock = self.hooks.port_forward(self.namespace, self.pod, port)
        except (ApiError, OSError) as exc:
            reason = exc.message if isinstance(exc, ApiError) else (exc.strerror or str(exc))
            message = f"error forwarding port {port} to pod {self.pod}, uid {self.uid}: {reason}"
            with contextlib.suppress(streams.ClientGone):
                self.ws.send_text_on_channel(2 * index + 1, message)
            return
        with self.lock:
            self.socks[index] = sock
            gone = self.gone.is_set()
        writer = threading.Thread(target=self._to_pod, args=(index, sock), name="port-forward-in", daemon=True)
        try:
            if gone:
                return
            writer.start()
            while data := _recv(sock):
                self.ws.send_channel(2 * index, data)
        except streams.ClientGone:
            self.gone.set()
        finally:
            self.to_pod[index].put(None)
            if writer.is_alive():
                writer.join(timeout=_JOIN)
            sock.close()

    def _to_pod(self, index: int, sock: socket.socket) -> None:
        while (data := self.to_pod[index].get()) is not None:
            try:
                sock.sendall(data)
            except OSError:
                return


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(_CHUNK)
    except OSError:
        return b""
