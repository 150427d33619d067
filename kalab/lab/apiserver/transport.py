"""The API server's HTTP/1.1 layer: TLS connections, each served in its own thread, with h11 speaking the protocol.

h11 parses requests, frames responses (Content-Length, chunked, or close-delimited for an HTTP/1.0 client), keeps
connections alive between requests, and hands back the bytes that follow a request when it is upgraded (101). The
I/O stays blocking and threaded on purpose: watches block on the store's Condition, exec/attach/port-forward
sessions copy bytes between a socket and processes in threads, and the websocket and SPDY/3.1 upgrades take the
raw (TLS) socket over after the 101. An asyncio server (uvicorn, hypercorn, aiohttp) would force all of that onto
an event loop, and ASGI cannot hand over the connection for SPDY.

An application is a callable taking an `Exchange`: one request, and the means to answer it once — a whole
response (`respond`), a streamed one (`start_stream`, `write`, `end`), or a protocol switch (`upgrade`).
"""

from __future__ import annotations

import contextlib
import email.utils
import logging
import socket
import ssl
import threading
from collections.abc import Callable, Iterable, Sequence
from http import HTTPStatus
from typing import Final, overload
from urllib.parse import urlsplit

import h11

_log = logging.getLogger(__name__)

_RECV_SIZE: Final = 64 * 1024
# Request line plus headers: what h11 buffers before it gives up with 431 (kube-apiserver: Go's 1 MiB default).
MAX_HEADER_BYTES: Final = 1024 * 1024

Header = tuple[str, str]


class BodyTooLarge(Exception):
    """The request's body is larger than the caller accepts."""


class ProtocolError(Exception):
    """The exchange cannot go on as the caller asked (e.g. a second response); the connection is closed."""


class Headers:
    """A request's header fields: names match case-insensitively; values keep their order, repeats included."""

    def __init__(self, fields: Iterable[tuple[bytes, bytes]]) -> None:
        self._fields = [(name.decode("latin-1"), value.decode("latin-1")) for name, value in fields]

    @overload
    def get(self, name: str) -> str | None: ...
    @overload
    def get(self, name: str, default: str) -> str: ...
    @overload
    def get(self, name: str, default: None) -> str | None: ...

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of `name`, or `default`."""
        wanted = name.lower()
        return next((v for n, v in self._fields if n.lower() == wanted), default)

    def get_all(self, name: str) -> list[str]:
        wanted = name.lower()
        return [v for n, v in self._fields if n.lower() == wanted]

    def items(self) -> list[Header]:
        return list(self._fields)


class Request:
    """What the client asked: method, target (path and query as sent), headers; the body is read on demand."""

    def __init__(
        self, method: str, target: str, headers: Headers, http_version: str, client_address: tuple[str, int]
    ) -> None:
        self.method = method
        self.target = target
        self.headers = headers
        self.http_version = http_version
        self.client_address = client_address
        parts = urlsplit(target)
        self.path = parts.path
        self.query = parts.query


def _http_date() -> str:
    return email.utils.formatdate(usegmt=True)


class _Reader:
    """Feeds h11 from the socket until it has an event."""

    def __init__(self, sock: socket.socket, conn: h11.Connection) -> None:
        self.sock = sock
        self.conn = conn

    def next_event(self) -> h11.Event | type[h11.PAUSED]:
        while True:
            event = self.conn.next_event()
            if event is not h11.NEED_DATA:
                return event  # type: ignore[return-value]
            try:
                data = self.sock.recv(_RECV_SIZE)
            except (ssl.SSLError, OSError) as err:
                _log.debug("reading a request failed: %r", err)
                data = b""
            self.conn.receive_data(data)


class Exchange:
    """One request on a connection and its one response.

    `close_after()` asks for the connection to be closed once the response is out (as a request whose body was left
    unread must). `started` tells whether the response's head is out: after that an error can only end the stream.
    """

    def __init__(self, sock: socket.socket, conn: h11.Connection, reader: _Reader, request: Request) -> None:
        self.sock = sock
        self.request = request
        self._conn = conn
        self._reader = reader
        self.started = False
        self.finished = False
        self.upgraded = False
        self.keep_alive = True
        self.status = 0

    # -- the request ------------------------------------------------------------------------------------------

    @property
    def headers(self) -> Headers:
        return self.request.headers

    def read_body(self, limit: int) -> bytes:
        """The whole body (de-chunked); `BodyTooLarge` past `limit` bytes (the rest is then never read)."""
        declared = self.headers.get("Content-Length")
        if declared is not None and declared.strip().isdigit() and int(declared) > limit:
            self.keep_alive = False
            raise BodyTooLarge
        if self._conn.they_are_waiting_for_100_continue:
            self._send(h11.InformationalResponse(status_code=100, headers=[], reason=b"Continue"))
        chunks: list[bytes] = []
        size = 0
        while True:
            event = self._reader.next_event()
            if isinstance(event, h11.Data):
                size += len(event.data)
                if size > limit:
                    self.keep_alive = False
                    raise BodyTooLarge
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                return b"".join(chunks)
            else:  # the client closed (or broke) the connection mid-body
                raise ConnectionResetError("the client closed the connection before its request body ended")

    # -- the response -----------------------------------------------------------------------------------------

    def close_after(self) -> None:
        self.keep_alive = False

    def _send(self, *events: h11.Event) -> None:
        # One write for a whole response: with TCP_NODELAY every write is a TLS record and a segment of its own.
        data = b"".join(self._conn.send(event) or b"" for event in events)
        if data:
            self.sock.sendall(data)

    def _response(self, status: int, headers: Sequence[Header]) -> h11.Response:
        if self.started:
            raise ProtocolError("the response has started already")
        self.started = True
        self.status = status
        fields = [("Date", _http_date()), *headers]
        if not self.keep_alive:
            fields.append(("Connection", "close"))
        _log.debug('%s "%s %s" %d', self.request.client_address[0], self.request.method, self.request.target, status)
        return h11.Response(status_code=status, headers=fields, reason=_reason(status).encode())

    def respond(
        self, status: int, headers: Sequence[Header], body: bytes = b"", *, content_length: bool = True
    ) -> None:
        """A whole response; Content-Length is added unless told not to (a HEAD request gets the length, no body)."""
        head = self._response(status, [*headers, ("Content-Length", str(len(body)))] if content_length else headers)
        self.finished = True
        if body and self.request.method != "HEAD":
            self._send(head, h11.Data(data=body), h11.EndOfMessage())
        else:
            self._send(head, h11.EndOfMessage())

    def start_stream(self, status: int, headers: Sequence[Header]) -> None:
        """The head of a response whose body follows in `write`s: chunked for HTTP/1.1, close-delimited for 1.0."""
        self._send(self._response(status, headers))

    def write(self, data: bytes) -> None:
        if data:
            self._send(h11.Data(data=data))

    def end(self) -> None:
        """The end of a streamed body (the last chunk)."""
        if not self.finished:
            self.finished = True
            self._send(h11.EndOfMessage())

    def upgrade(self, headers: Sequence[Header]) -> tuple[socket.socket, bytes]:
        """Answer 101 Switching Protocols: the connection, and the bytes the client sent after its request, are the
        caller's from here on (they never go back to HTTP)."""
        if self.started:
            raise ProtocolError("the response has started already")
        # The request must be complete (a GET has no body) for h11 to let the protocol switch.
        while self._conn.their_state is h11.SEND_BODY:
            event = self._reader.next_event()
            if not isinstance(event, h11.Data | h11.EndOfMessage):
                raise ConnectionResetError("the client closed the connection before its request ended")
        self.started = self.finished = self.upgraded = True
        self.status = 101
        self.keep_alive = False
        self._send(h11.InformationalResponse(status_code=101, headers=list(headers), reason=b"Switching Protocols"))
        _log.debug('%s "%s %s" 101', self.request.client_address[0], self.request.method, self.request.target)
        leftover, _ = self._conn.trailing_data
        return self.sock, bytes(leftover)


Application = Callable[[Exchange], None]
# What a request h11 cannot parse is answered with: status and body (kube-apiserver answers a Status).
ErrorPage = Callable[[int, str], tuple[list[Header], bytes]]


class Server:
    """Accepts on a listening socket and serves each connection in its own thread until `shutdown()`."""

    def __init__(
        self,
        listener: socket.socket,
        application: Application,
        error_page: ErrorPage,
        tls: ssl.SSLContext | None,
        *,
        idle_timeout: float,
        handshake_timeout: float,
        name: str = "http",
    ) -> None:
        self.listener = listener
        self.application = application
        self.error_page = error_page
        self.tls = tls
        self.idle_timeout = idle_timeout
        self.handshake_timeout = handshake_timeout
        self.name = name
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        host, port = listener.getsockname()[:2]
        self.address = (str(host), int(port))

    def start(self) -> None:
        self._thread = threading.Thread(target=self._accept_loop, name=self.name, daemon=True)
        self._thread.start()

    def shutdown(self) -> None:
        """Stop accepting and close every live connection (ending their watches and sessions). Idempotent."""
        self._stopping.set()
        with contextlib.suppress(OSError):
            # Wakes accept(): shutting a listening socket down makes a blocked accept() return at once on Linux.
            self.listener.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self.listener.close()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        with self._lock:
            live = list(self._connections)
        for conn in live:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                conn.close()

    @property
    def live_connections(self) -> int:
        with self._lock:
            return len(self._connections)

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                raw, address = self.listener.accept()
            except OSError as err:
                if self._stopping.is_set():
                    return
                # Out of file descriptors, say: pause rather than spin, as Go's net/http does.
                _log.warning("accept failed: %s", err)
                self._stopping.wait(0.05)
                continue
            threading.Thread(
                target=self._serve_connection, args=(raw, address), name=f"{self.name}-conn", daemon=True
            ).start()

    def _serve_connection(self, raw: socket.socket, address: tuple[str, int]) -> None:
        # The TLS handshake runs here, in the connection's own thread, so one slow client cannot stall accept().
        with self._lock:
            self._connections.add(raw)
        sock: socket.socket = raw
        try:
            # Headers and body may go out in separate writes; with Nagle's algorithm the body then waits for the
            # client's delayed ACK (~40 ms a response). Go's net/http, hence kube-apiserver, sets TCP_NODELAY too.
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            raw.settimeout(self.handshake_timeout)
            if self.tls is not None:
                sock = self.tls.wrap_socket(raw, server_side=True)
                with self._lock:
                    self._connections.discard(raw)
                    self._connections.add(sock)
            if self._stopping.is_set():
                return
            sock.settimeout(self.idle_timeout)
            self._converse(sock, (str(address[0]), int(address[1])))
        except (OSError, ssl.SSLError) as err:
            _log.debug("connection from %s ended: %s", address, err)
        except Exception:
            _log.exception("connection from %s failed", address)
        finally:
            with self._lock:
                self._connections.discard(sock)
                self._connections.discard(raw)
            with contextlib.suppress(OSError):
                sock.close()

    def _converse(self, sock: socket.socket, address: tuple[str, int]) -> None:
        """Requests, one after the other, until the client or a response ends the connection."""
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADER_BYTES)
        reader = _Reader(sock, conn)
        while not self._stopping.is_set():
            try:
                event = reader.next_event()
            except h11.RemoteProtocolError as err:
                self._refuse(sock, conn, err)
                return
            if not isinstance(event, h11.Request):
                return  # ConnectionClosed (or a client that broke off): nothing more to serve
            request = Request(
                event.method.decode("ascii", "replace"),
                event.target.decode("latin-1"),
                Headers(event.headers.raw_items()),
                event.http_version.decode("ascii"),
                address,
            )
            exchange = Exchange(sock, conn, reader, request)
            try:
                self.application(exchange)
            except h11.RemoteProtocolError as err:  # a malformed body (bad chunk framing)
                if not exchange.started:
                    self._refuse(sock, conn, err)
                return
            if exchange.upgraded or not exchange.finished or not exchange.keep_alive:
                return
            # A request without a body (a GET) still ends in h11's EndOfMessage, which nobody asked for yet; a
            # body left unread (and not already here) ends the connection instead.
            while conn.their_state is h11.SEND_BODY:
                if not isinstance(conn.next_event(), h11.Data | h11.EndOfMessage):
                    return
            if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                return  # h11 wants the connection closed (HTTP/1.0, Connection: close) or the body was left unread
            conn.start_next_cycle()

    def _refuse(self, sock: socket.socket, conn: h11.Connection, err: h11.RemoteProtocolError) -> None:
        """A request h11 could not parse: its status (400, 414, 431 ...) and a body, then the connection ends."""
        if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        status = err.error_status_hint
        headers, body = self.error_page(status, str(err))
        fields = [
            ("Date", _http_date()),
            *headers,
            ("Content-Length", str(len(body))),
            ("Connection", "close"),
        ]
        # h11 refuses to send on a connection whose peer broke the protocol: the answer is framed by hand here.
        head = f"HTTP/1.1 {status} {_reason(status)}\r\n" + "".join(f"{n}: {v}\r\n" for n, v in fields) + "\r\n"
        with contextlib.suppress(OSError):
            sock.sendall(head.encode("latin-1") + body)
        _log.debug("refused a malformed request: %s", err)


def _reason(status: int) -> str:
    with contextlib.suppress(ValueError):
        return HTTPStatus(status).phrase
    return ""
