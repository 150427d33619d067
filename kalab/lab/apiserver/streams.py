"""The streaming pod subresources: `pods/exec` over websocket channels, `pods/log` (followed or not), pod proxy.

The HTTP server parses and routes the request; these functions then answer its `transport.Exchange` and speak what
real clients expect from kube-apiserver:

- exec: a websocket (RFC 6455; framing by wsproto, the opening handshake checked here because the HTTP request
  has already been parsed by `transport`, which sends our 101) carrying the Kubernetes channel protocol. Every
  message's first byte is its channel: 0 stdin, 1 stdout, 2 stderr, 3 error/status, 4 terminal resize;
  `v5.channel.k8s.io` adds channel 255, "close stream <n>", with which a client ends its stdin. From v4 on,
  channel 3 carries a `Status` object with the exit code; before v4 it carried plain error text.
- log: `text/plain`; when following, a chunked response flushed chunk by chunk until the log ends or the client
  goes away.
- proxy: the request handed to the kubelet (which makes it from inside the lab), the answer written back.

Errors the kubelet raises as `ApiError` become `Status` objects with their code; for exec, which asks the kubelet
only once upgraded, that is a Failure `Status` on channel 3 followed by a normal websocket close.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
import queue
import select
import socket
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Event, Message, Ping, TextMessage
from wsproto.frame_protocol import CloseReason
from wsproto.utilities import LocalProtocolError, generate_accept_token

from kalab.lab.apiserver.errors import ApiError, bad_request, forbidden
from kalab.lab.apiserver.hooks import ExecRequest, ExecSession, LogRequest, PodHooks
from kalab.lab.apiserver.transport import Exchange

_log = logging.getLogger(__name__)

STDIN: Final = 0
STDOUT: Final = 1
STDERR: Final = 2
ERROR: Final = 3
RESIZE: Final = 4
CLOSE_STREAM: Final = 255  # v5 only: payload is the number of the channel the sender will not write to again

# How often the exec loop looks at whether the client is still there while the command is silent.
_POLL: Final = 0.1
# A client that does not take a frame (or a log chunk) for this long is treated as gone: this bounds how long a
# session can outlive a client that stopped reading without closing.
_SEND_TIMEOUT: Final = 30.0
# After our close frame, how long we wait for the client's before dropping the connection anyway.
_CLOSE_WAIT: Final = 5.0
# A followed log waits this long for its first chunk before sending the headers, so that an error the kubelet
# only raises on the first read (a generator) still becomes a proper Status response.
_FIRST_LOG_WAIT: Final = 0.5
# Large outputs go out as several messages; clients reassemble nothing across messages, so any size works,
# this just keeps single frames modest.
_MAX_FRAME: Final = 32 * 1024
_RECV_SIZE: Final = 64 * 1024


@dataclass(frozen=True)
class ChannelProtocol:
    """One of the websocket subprotocols of the Kubernetes channel protocol."""

    name: str  # "" when the client offered none: served as plain channel.k8s.io without naming it
    version: int  # 4+: Status JSON on channel 3; 5: the close-stream channel
    base64: bool  # text frames: channel as an ASCII digit, then the payload in base64


# Best first: when a client offers several, it gets the newest we speak.
PROTOCOLS: Final = (
    ChannelProtocol("v5.channel.k8s.io", 5, False),
    ChannelProtocol("v4.channel.k8s.io", 4, False),
    ChannelProtocol("v4.base64.channel.k8s.io", 4, True),
    ChannelProtocol("v3.channel.k8s.io", 3, False),
    ChannelProtocol("v2.channel.k8s.io", 2, False),
    ChannelProtocol("channel.k8s.io", 1, False),
    ChannelProtocol("base64.channel.k8s.io", 1, True),
)

_HOP_BY_HOP: Final = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)

# A client that has gone away shows up as an OSError of some kind when we write to it: BrokenPipeError,
# ConnectionResetError, ssl.SSLError (TLS), TimeoutError (it stopped reading) are all OSErrors.
_GONE: Final = OSError


# --------------------------------------------------------------------------------------------------- exec


def serve_exec(handler: Exchange, hooks: PodHooks, request: ExecRequest) -> None:
    """Upgrade the request to a channel websocket, run the command and pump its streams until it exits."""
    try:
        key, protocol = negotiate(handler)
    except Refused as refused:
        write_status(handler, refused.error, refused.headers)
        return
    # The connection is the websocket's from here on; it is never reused for another HTTP request.
    try:
        sock, leftover = write_switching_protocols(handler, key, protocol)
    except _GONE:
        return
    # The command starts after the upgrade, so the kubelet's refusals travel on channel 3. Refused before the
    # upgrade, kubectl would retry over SPDY, which this server does not speak, and show that error instead of
    # the kubelet's. (Pod and container existence are the API server's to check beforehand, from storage, as
    # kube-apiserver does: then websocket and SPDY attempts get the same 404/400.)
    _ExecPump(sock, protocol, hooks, request, _wanted_streams(handler.request.target), leftover).run()


class Refused(Exception):
    def __init__(self, error: ApiError, headers: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(error.message)
        self.error = error
        self.headers = headers


def _tokens(values: Iterable[str]) -> list[str]:
    return [token.strip() for value in values for token in value.split(",") if token.strip()]


def negotiate(
    handler: Exchange,
    protocols: Sequence[ChannelProtocol] = PROTOCOLS,
    no_websocket: str = "Upgrade request required: pods/exec is served over websocket",
) -> tuple[str, ChannelProtocol]:
    """The client's Sec-WebSocket-Key and the subprotocol to answer with (the best of `protocols` it offers);
    `Refused` when we cannot upgrade, with `no_websocket` leading the error for a request that is not one."""
    headers = handler.headers
    connection = {t.lower() for t in _tokens(headers.get_all("Connection") or [])}
    upgrade = {t.lower() for t in _tokens(headers.get_all("Upgrade") or [])}
    if "upgrade" not in connection or "websocket" not in upgrade:
        # Also what a SPDY/3.1 upgrade gets: this server speaks websockets only, and current kubectl tries the
        # websocket first, falling back to SPDY only when that upgrade fails.
        names = ", ".join(p.name for p in protocols)
        raise Refused(bad_request(f"{no_websocket} (Sec-WebSocket-Protocol {names}); SPDY is not supported"))
    version = headers.get("Sec-WebSocket-Version", "").strip()
    if version != "13":
        # RFC 6455 4.4: refuse and name the version we speak.
        raise Refused(
            bad_request(f"unsupported Sec-WebSocket-Version {version!r}, only 13 is supported"),
            [("Sec-WebSocket-Version", "13")],
        )
    key = headers.get("Sec-WebSocket-Key", "").strip()
    try:
        valid_key = len(base64.b64decode(key, validate=True)) == 16
    except binascii.Error:
        valid_key = False
    if not valid_key:
        raise Refused(bad_request("missing or malformed Sec-WebSocket-Key"))
    offered = _tokens(headers.get_all("Sec-WebSocket-Protocol") or [])
    if not offered:
        # Kubernetes serves a client that names no subprotocol as the original channel.k8s.io.
        return key, ChannelProtocol("", 1, False)
    for protocol in protocols:
        if protocol.name in offered:
            return key, protocol
    # Like kube-apiserver, whose websocket handshake refuses an unknown subprotocol with 403.
    raise Refused(
        forbidden(f"requested protocol(s) are not supported: {offered}; supports {[p.name for p in protocols]}")
    )


def write_switching_protocols(handler: Exchange, key: str, protocol: ChannelProtocol) -> tuple[socket.socket, bytes]:
    """Answer 101 for the websocket: the connection and what the client sent after its request, now the caller's."""
    headers = [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Accept", generate_accept_token(key.encode("ascii")).decode("ascii")),
    ]
    if protocol.name:
        headers.append(("Sec-WebSocket-Protocol", protocol.name))
    return handler.upgrade(headers)


def _wanted_streams(path: str) -> frozenset[int]:
    """Output channels the client asked for. Only an explicit `stdout=false`/`stderr=false` drops one: client-go
    logs an error for every message on a channel it did not open."""
    query = parse_qs(urlsplit(path).query)
    wanted = set()
    for channel, name in ((STDOUT, "stdout"), (STDERR, "stderr")):
        values = query.get(name)
        if not values or values[-1].lower() not in ("false", "0"):
            wanted.add(channel)
    return frozenset(wanted)


def exit_status(code: int) -> dict[str, Any]:
    """The v4+ channel-3 Status for a finished command, as the kubelet writes it."""
    if code < 0:
        # Killed by a signal: report it as a shell and the kubelet do (137 for SIGKILL); clients parse 0..255.
        code = 128 + (-code)
    code = min(code, 255)
    if code == 0:
        return {"metadata": {}, "status": "Success"}
    return {
        "metadata": {},
        "status": "Failure",
        "message": f"command terminated with non-zero exit code: {code}",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
    }


def _end_session(session: ExecSession) -> None:
    """Stop a command whose client is gone, and reap it without waiting long."""
    # Teardown of a session that may already be gone: there is nobody left to report a failure to.
    with contextlib.suppress(Exception):
        session.kill()
        session.wait(timeout=2.0)


class ClientGone(Exception):
    pass


class WebSocket:
    """A server-side websocket over an accepted socket (plain or TLS). wsproto builds and parses the frames.

    Two threads share it: the reader receives, the exec loop sends. An `ssl.SSLSocket` must not be read and
    written at once (one OpenSSL object underneath), and wsproto's state is not thread-safe either, so every
    socket and wsproto call holds `_io`. The reader waits for readability with select() outside the lock and
    then reads without blocking, so a silent client never keeps the writer waiting.
    """

    def __init__(self, sock: socket.socket, protocol: ChannelProtocol, leftover: bytes = b"") -> None:
        self.sock = sock
        self.protocol = protocol
        self._ws = Connection(ConnectionType.SERVER)
        self._leftover = leftover  # frames the client sent right behind its upgrade request
        self._io = threading.Lock()
        sock.settimeout(_SEND_TIMEOUT)

    def _send_locked(self, event: Event) -> None:
        self.sock.sendall(self._ws.send(event))

    def send_channel(self, channel: int, data: bytes) -> None:
        for start in range(0, max(len(data), 1), _MAX_FRAME):
            piece = data[start : start + _MAX_FRAME]
            event: Event
            if self.protocol.base64:
                event = TextMessage(chr(ord("0") + channel) + base64.b64encode(piece).decode("ascii"))
            else:
                event = BytesMessage(bytes([channel]) + piece)
            with self._io:
                if self._ws.state is not ConnectionState.OPEN:
                    raise ClientGone
                try:
                    self._send_locked(event)
                except _GONE as exc:
                    raise ClientGone from exc

    def send_text_on_channel(self, channel: int, text: str) -> None:
        self.send_channel(channel, text.encode("utf-8"))

    def close(self, code: int = CloseReason.NORMAL_CLOSURE, reason: str = "") -> None:
        with self._io:
            if self._ws.state in (ConnectionState.OPEN, ConnectionState.REMOTE_CLOSING):
                with contextlib.suppress(_GONE, LocalProtocolError):
                    self._send_locked(CloseConnection(code=code, reason=reason))

    def _readable(self, timeout: float) -> bool:
        if self._leftover or (isinstance(self.sock, ssl.SSLSocket) and self.sock.pending()):
            return True  # already decrypted and buffered: select() on the socket cannot see it
        try:
            readable, _, _ = select.select([self.sock], [], [], timeout)
        except (OSError, ValueError):  # closed underneath us
            return True  # let recv report it
        return bool(readable)

    def receive(self, timeout: float) -> list[Event] | None:
        """Events from what arrived within `timeout` ([] if nothing); None once the transport is closed.

        Pings and the client's close are answered here, while the lock is held, as RFC 6455 asks.
        """
        if not self._readable(timeout):
            return []
        with self._io:
            if self._ws.state is ConnectionState.CLOSED:
                return None
            data: bytes | None
            if self._leftover:
                data, self._leftover = self._leftover, b""
            else:
                self.sock.settimeout(0)
                try:
                    data = self.sock.recv(_RECV_SIZE)
                except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                    return []  # a partial TLS record, or only TLS housekeeping: nothing for us yet
                except OSError:
                    data = b""
                finally:
                    self.sock.settimeout(_SEND_TIMEOUT)
            self._ws.receive_data(data or None)  # None: the TCP connection ended without a close frame
            events = list(self._ws.events())
            for event in events:
                # In state OPEN, a CloseConnection is wsproto reporting a frame that failed to parse: we close.
                if isinstance(event, Ping) or (
                    isinstance(event, CloseConnection)
                    and self._ws.state in (ConnectionState.OPEN, ConnectionState.REMOTE_CLOSING)
                ):
                    with contextlib.suppress(_GONE, LocalProtocolError):
                        self._send_locked(event.response())
            if not data:
                return None
            return events

    def messages(self, go_on: Callable[[], bool], poll: float = _POLL) -> Iterator[tuple[bytes, bool]]:
        """Each whole message the client sends, as (payload, whether it was a text frame), while `go_on()`;
        ends when the client closes or the connection ends."""
        partial = bytearray()
        while go_on():
            events = self.receive(poll)
            if events is None:
                return
            for event in events:
                if isinstance(event, CloseConnection):
                    return
                if isinstance(event, Message):
                    chunk = event.data
                    partial += chunk.encode("utf-8") if isinstance(chunk, str) else chunk
                    if event.message_finished:
                        yield bytes(partial), isinstance(event, TextMessage)
                        partial.clear()

    def channel_messages(self, go_on: Callable[[], bool], poll: float = _POLL) -> Iterator[tuple[int, bytes]]:
        """Each message the client sends, as (channel, payload) of the channel protocol: the first byte is the
        channel, or with base64.channel.k8s.io an ASCII digit followed by base64. Empty or undecodable messages
        are skipped, as the kubelet skips them."""
        for message, text in self.messages(go_on, poll):
            if not message:
                continue
            if self.protocol.base64 and text:
                try:
                    yield message[0] - ord("0"), base64.b64decode(message[1:])
                except binascii.Error:
                    continue
            else:
                yield message[0], message[1:]


class _ExecPump:
    """Moves bytes between a websocket and an exec session until the command exits or the client leaves."""

    def __init__(
        self,
        sock: socket.socket,
        protocol: ChannelProtocol,
        hooks: PodHooks,
        request: ExecRequest,
        wanted: frozenset[int],
        leftover: bytes = b"",
    ) -> None:
        self.ws = WebSocket(sock, protocol, leftover)
        self.hooks = hooks
        self.session: ExecSession | None = None
        self.request = request
        self.wanted = wanted
        self.client_gone = threading.Event()  # the client closed, vanished, or broke the protocol
        self.stop = threading.Event()  # we are done: the reader may stop waiting for frames
        # Stdin is written from its own thread: a command that does not read its stdin must not stall the
        # reader, which has to keep answering pings and noticing that the client left.
        self.stdin: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self.ended = False  # the command exited and was reaped, or was killed: nothing left to stop
        # A resize that arrives before the session exists is applied once it does.
        self._sizing = threading.Lock()
        self._early_size: tuple[int, int] | None = None

    def run(self) -> None:
        reader = threading.Thread(target=self._read_client, name="exec-ws-reader", daemon=True)
        reader.start()
        try:
            status = self._pump()
            if status is not None:
                if self.session is not None and not self.ended:
                    # The session failed rather than its command exiting: stop whatever it left running
                    # before the client learns it is over.
                    _end_session(self.session)
                    self.ended = True
                self._finish(status)
        except ClientGone:
            pass
        finally:
            if self.session is not None and not self.ended:
                _end_session(self.session)
            self.stdin.put(None)
            self.ws.close()
            reader.join(timeout=_CLOSE_WAIT)
            self.stop.set()
            reader.join(timeout=1.0)

    def _start(self) -> ExecSession:
        session = self.hooks.exec(self.request)
        with self._sizing:
            self.session = session
            early, self._early_size = self._early_size, None
        if early is not None:
            self._resize_session(session, *early)
        if self.request.stdin:
            threading.Thread(target=self._write_stdin, args=(session,), name="exec-stdin", daemon=True).start()
        return session

    def _pump(self) -> dict[str, Any] | None:
        """Start the command, copy its output until it ends; its channel-3 Status, or None when the client left."""
        try:
            session = self._start()
            while True:
                if self.client_gone.is_set():
                    return None
                item = session.read(_POLL)
                if item is None:
                    continue
                stream, data = item
                if stream == 0:
                    break  # both outputs at EOF
                if data and stream in self.wanted:
                    self.ws.send_channel(stream, data)
            # Output is closed but the command may still run (and read stdin): wait for it as long as the
            # client stays.
            while True:
                if self.client_gone.is_set():
                    return None
                try:
                    code = session.wait(timeout=_POLL)
                    self.ended = True
                    break
                except (TimeoutError, subprocess.TimeoutExpired):
                    continue
            return exit_status(code)
        except ApiError as error:
            return error.status()
        except ClientGone:
            raise
        except Exception as exc:  # the client must learn the session failed, on channel 3
            return ApiError(500, "InternalError", f"exec session failed: {exc}").status()

    def _finish(self, status: dict[str, Any]) -> None:
        if self.ws.protocol.version >= 4:
            self.ws.send_text_on_channel(ERROR, json.dumps(status))
        elif status.get("status") != "Success":
            # Before v4 the error channel carried only an error's text, and nothing on success.
            self.ws.send_text_on_channel(ERROR, str(status.get("message", "command failed")))

    def _read_client(self) -> None:
        try:
            for channel, payload in self.ws.channel_messages(lambda: not self.stop.is_set()):
                self._dispatch(channel, payload)
        except Exception:  # whatever broke the reader, the client is as good as gone
            return
        finally:
            self.client_gone.set()

    def _dispatch(self, channel: int, payload: bytes) -> None:
        if channel == STDIN:
            if self.request.stdin and payload:
                self.stdin.put(payload)
        elif channel == RESIZE:
            self._resize(payload)
        elif channel == CLOSE_STREAM and self.ws.protocol.version >= 5 and payload[:1] == bytes([STDIN]):
            self.stdin.put(None)

    def _resize(self, payload: bytes) -> None:
        try:
            size = json.loads(payload)
            width, height = int(size["Width"]), int(size["Height"])
        except (ValueError, KeyError, TypeError):
            return  # a malformed resize is not worth ending the session over
        with self._sizing:
            session = self.session
            if session is None:
                self._early_size = (width, height)
                return
        self._resize_session(session, width, height)

    @staticmethod
    def _resize_session(session: ExecSession, width: int, height: int) -> None:
        # Best effort: e.g. there is no terminal to resize (tty=false).
        with contextlib.suppress(Exception):
            session.resize(width, height)

    def _write_stdin(self, session: ExecSession) -> None:
        while True:
            data = self.stdin.get()
            try:
                if data is None:
                    session.close_stdin()
                    return
                session.write_stdin(data)
            except Exception:  # the command closed its stdin or ended: drop what is left
                return


# ---------------------------------------------------------------------------------------------------- log


def serve_log(handler: Exchange, hooks: PodHooks, request: LogRequest) -> None:
    """The container's log as text/plain; when following, streamed until the log ends or the client leaves."""
    try:
        chunks = hooks.logs(request)
        if request.follow:
            _follow_log(handler, chunks)
            return
        body = b"".join(chunks)
    except ApiError as error:
        write_status(handler, error)
        return
    else:
        try:
            handler.respond(200, [("Content-Type", "text/plain")], body)
        except _GONE:
            handler.close_after()


class _LogEnd:
    pass


_LOG_END: Final = _LogEnd()


def _produce(
    chunks: Iterator[bytes], out: queue.SimpleQueue[bytes | _LogEnd | Exception], stop: threading.Event
) -> None:
    """Drives the kubelet's iterator in its own thread, so the handler can notice a departed client while the log
    is silent. The iterator is closed from this thread, the one that runs it, once the handler stops listening."""
    try:
        for chunk in chunks:
            if stop.is_set():
                break
            out.put(chunk)
        out.put(_LOG_END)
    except Exception as exc:  # handed to the handler thread, which decides what the client sees
        out.put(exc)
    finally:
        close = getattr(chunks, "close", None)
        if callable(close):
            # The kubelet's own cleanup; the stream is over either way.
            with contextlib.suppress(Exception):
                close()


def _follow_log(handler: Exchange, chunks: Iterator[bytes]) -> None:
    out: queue.SimpleQueue[bytes | _LogEnd | Exception] = queue.SimpleQueue()
    stop = threading.Event()
    threading.Thread(target=_produce, args=(chunks, out, stop), name="log-follow", daemon=True).start()
    try:
        first = out.get(timeout=_FIRST_LOG_WAIT)
    except queue.Empty:
        first = b""
    if isinstance(first, ApiError):
        stop.set()
        write_status(handler, first)
        return
    # Watching for the client's departure may consume what it sends meanwhile (see peer_closed): the connection
    # is not reused after a followed log.
    handler.close_after()
    sock = handler.sock
    try:
        # Chunked for an HTTP/1.1 client; for an HTTP/1.0 one the body simply ends with the connection.
        handler.start_stream(200, [("Content-Type", "text/plain")])
        item = first
        while True:
            if isinstance(item, _LogEnd):
                break
            if isinstance(item, Exception):
                # Headers are out: the only way left to tell the client is to end the stream early.
                _log.warning("log stream failed: %s", item)
                break
            if item:
                handler.write(item)
            item = _next_log_item(out, sock)
        handler.end()
    except (ClientGone, _GONE):
        pass
    finally:
        stop.set()


def _next_log_item(
    out: queue.SimpleQueue[bytes | _LogEnd | Exception], sock: socket.socket
) -> bytes | _LogEnd | Exception:
    while True:
        try:
            return out.get(timeout=_FIRST_LOG_WAIT)
        except queue.Empty:
            if peer_closed(sock):
                raise ClientGone from None


def peer_closed(sock: socket.socket) -> bool:
    """Whether the client of a streamed response has hung up.

    While it is being sent a response the client has nothing to send, so the socket only becomes readable when
    the client closes. Plain TCP: a peek that finds the FIN leaves anything else in place. TLS 1.3 encrypts even
    the record type of a close_notify, so over TLS this reads: whatever the client sent meanwhile (a request sent
    ahead of time) is dropped, which is why followed logs close their connection afterwards.
    """
    if isinstance(sock, ssl.SSLSocket):
        if not sock.pending():
            try:
                readable, _, _ = select.select([sock], [], [], 0)
            except (OSError, ValueError):
                return True
            if not readable:
                return False
        timeout = sock.gettimeout()
        sock.settimeout(0)
        try:
            return sock.recv(_RECV_SIZE) == b""  # b"": close_notify or FIN
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return False  # part of a record, or TLS housekeeping
        except OSError:
            return True
        finally:
            sock.settimeout(timeout)
    try:
        waiting, _, _ = select.select([sock], [], [], 0)
        if not waiting:
            return False
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except (OSError, ValueError):
        return True


# -------------------------------------------------------------------------------------------------- proxy


def _forwardable(headers: Iterable[tuple[str, str]], drop: Iterable[str] = ()) -> list[tuple[str, str]]:
    """Headers minus the hop-by-hop ones (RFC 9110 7.6.1), including any the Connection header names."""
    pairs = list(headers)
    dropped = set(_HOP_BY_HOP) | {d.lower() for d in drop}
    dropped |= {t.lower() for t in _tokens(v for k, v in pairs if k.lower() == "connection")}
    return [(k, v) for k, v in pairs if k.lower() not in dropped]


def serve_proxy(
    handler: Exchange,
    hooks: PodHooks,
    namespace: str,
    pod: str,
    port: int,
    path: str,
    method: str,
    body: bytes,
) -> None:
    """Forward one HTTP request to the pod's port through the kubelet and write its answer back."""
    # Authorization is the client's credential for this API server, never the pod's business. Host and
    # Content-Length describe this hop: the kubelet's request sets its own from the target and the body.
    headers = _forwardable(handler.headers.items(), ("authorization", "host", "content-length"))
    headers.append(("X-Forwarded-For", str(handler.request.client_address[0])))
    try:
        response = hooks.proxy(namespace, pod, port, path, method, headers, body)
    except ApiError as error:
        write_status(handler, error)
        return
    except OSError as exc:
        # What kube-apiserver answers when it cannot reach the pod.
        write_status(handler, ApiError(503, "ServiceUnavailable", f"error trying to reach service: {exc}"))
        return
    try:
        has_body = method.upper() != "HEAD" and response.status not in (204, 304) and response.status >= 200
        handler.respond(
            response.status,
            _forwardable(response.headers, ("content-length",)),
            response.body if has_body or method.upper() == "HEAD" else b"",
            content_length=has_body or method.upper() == "HEAD",
        )
    except _GONE:
        handler.close_after()


# ------------------------------------------------------------------------------------------------- common


def write_status(handler: Exchange, error: ApiError, headers: Sequence[tuple[str, str]] = ()) -> None:
    body = json.dumps(error.status()).encode("utf-8")
    try:
        handler.respond(error.code, [("Content-Type", "application/json"), *headers], body)
    except _GONE:
        handler.close_after()
