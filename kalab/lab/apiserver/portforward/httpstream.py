"""Port forwarding over SPDY/3.1: the portforward.k8s.io protocol, as the kubelet's httpstream server speaks it.

After the upgrade the client opens, for every connection it forwards, two streams carrying the same `requestID`
and `port` headers: an error stream (`streamType: error`), which it half-closes at once and then reads to its
end, and a data stream (`streamType: data`) carrying the connection's bytes both ways. Each SYN_STREAM gets a
SYN_REPLY; once both streams of a request are there the kubelet (the `port_forward` hook) opens a TCP connection
to the port from inside the pod's network namespace, and bytes are copied until both sides are done. A failure
is written as text on the error stream.

There is no flow control, as in moby/spdystream on both ends of a real cluster: WINDOW_UPDATEs are ignored.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import select
import socket
import ssl
import threading
from dataclasses import dataclass, field
from typing import Final

from kalab.lab.apiserver import spdy
from kalab.lab.apiserver.errors import ApiError, bad_request, forbidden
from kalab.lab.apiserver.hooks import PodHooks
from kalab.lab.apiserver.portforward.connections import JOIN, POLL, failure, recv
from kalab.lab.apiserver.streams.exchange import tokens, write_status
from kalab.lab.apiserver.transport import Exchange

_log = logging.getLogger(__name__)

PROTOCOL: Final = "portforward.k8s.io"
WEBSOCKET_PROTOCOL: Final = "SPDY/3.1+portforward.k8s.io"  # kubectl 1.31+'s tunnel, refused (see the package)
_SEND_TIMEOUT: Final = 30.0  # a client that takes no frame for this long is gone
_RECV_SIZE: Final = 64 * 1024


class _Refused(Exception):
    def __init__(self, error: ApiError) -> None:
        super().__init__(error.message)
        self.error = error


def negotiate(handler: Exchange) -> None:
    """Check the upgrade request; `_Refused` with the error kube-apiserver/the kubelet would answer."""
    headers = handler.headers
    upgrade = {t.lower() for t in tokens(headers.get_all("Upgrade") or [])}
    connection = {t.lower() for t in tokens(headers.get_all("Connection") or [])}
    if "upgrade" not in connection or "spdy/3.1" not in upgrade:
        raise _Refused(bad_request("Upgrade request required: pods/portforward is served over SPDY/3.1"))
    offered = tokens(headers.get_all("X-Stream-Protocol-Version") or [])
    if not offered:
        raise _Refused(bad_request("unable to upgrade: X-Stream-Protocol-Version is required"))
    if PROTOCOL not in offered:
        raise _Refused(
            forbidden(
                f"unable to upgrade: unable to negotiate protocol: client supports {offered}, "
                f"server accepts [{PROTOCOL}]"
            )
        )


def serve_spdy(handler: Exchange, hooks: PodHooks, namespace: str, pod: str, uid: str) -> None:
    """Upgrade the request to SPDY/3.1 and forward to the pod until the client leaves."""
    try:
        negotiate(handler)
    except _Refused as refused:
        write_status(handler, refused.error)
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
                for frame in self.transport.receive(POLL):
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
                forward.thread.join(timeout=JOIN)

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
                message = failure(forward.port, self.pod, self.uid, exc)
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
            while data := recv(sock):
                self.transport.send(spdy.DataFrame(forward.data_id, data))
            if not forward.aborted:
                # The pod closed its side: so does the data stream, and the error stream ends empty.
                self.transport.send(
                    spdy.DataFrame(forward.data_id, fin=True), spdy.DataFrame(forward.error_id, fin=True)
                )
            # The client may still be sending (a half-closed connection): the writer ends with its FIN or a reset.
            while writer.is_alive() and not self.ended.is_set():
                writer.join(timeout=POLL)
        finally:
            forward.to_pod.put(None)
            writer.join(timeout=JOIN)

    def _to_pod(self, forward: _Forward, sock: socket.socket) -> None:
        while True:
            try:
                data = forward.to_pod.get(timeout=POLL)
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
