"""The Kubernetes channel protocol over a websocket, as k8s.io/apiserver's wsstream speaks it.

A websocket (RFC 6455; framing by wsproto, the opening handshake checked here because the HTTP request has already
been parsed by `transport`, which sends our 101) carries numbered channels: every message's first byte is its
channel. For exec and attach these are 0 stdin, 1 stdout, 2 stderr, 3 error/status, 4 terminal resize;
`v5.channel.k8s.io` adds channel 255, "close stream <n>", with which a client ends its stdin. From v4 on, channel
3 carries a `Status` object with the exit code; before v4 it carried plain error text. Port forwarding's websocket
form speaks the same protocol with channels of its own.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import select
import socket
import ssl
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Final

from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Event, Message, Ping, TextMessage
from wsproto.frame_protocol import CloseReason
from wsproto.utilities import LocalProtocolError, generate_accept_token

from kalab.lab.apiserver.errors import ApiError, bad_request, forbidden
from kalab.lab.apiserver.streams.exchange import GONE, ClientGone, tokens
from kalab.lab.apiserver.transport import Exchange

STDIN: Final = 0
STDOUT: Final = 1
STDERR: Final = 2
ERROR: Final = 3
RESIZE: Final = 4
CLOSE_STREAM: Final = 255  # v5 only: payload is the number of the channel the sender will not write to again

# How often a reader looks at whether the client is still there (and an exec loop at whether the command is) while
# nothing arrives.
POLL: Final = 0.1
# A client that does not take a frame for this long is treated as gone: this bounds how long a session can outlive
# a client that stopped reading without closing.
_SEND_TIMEOUT: Final = 30.0
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


class Refused(Exception):
    def __init__(self, error: ApiError, headers: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(error.message)
        self.error = error
        self.headers = headers


def negotiate(
    handler: Exchange,
    protocols: Sequence[ChannelProtocol] = PROTOCOLS,
    no_websocket: str = "Upgrade request required: pods/exec is served over websocket",
) -> tuple[str, ChannelProtocol]:
    """The client's Sec-WebSocket-Key and the subprotocol to answer with (the best of `protocols` it offers);
    `Refused` when we cannot upgrade, with `no_websocket` leading the error for a request that is not one."""
    headers = handler.headers
    connection = {t.lower() for t in tokens(headers.get_all("Connection") or [])}
    upgrade = {t.lower() for t in tokens(headers.get_all("Upgrade") or [])}
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
    offered = tokens(headers.get_all("Sec-WebSocket-Protocol") or [])
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
                except GONE as exc:
                    raise ClientGone from exc

    def send_text_on_channel(self, channel: int, text: str) -> None:
        self.send_channel(channel, text.encode("utf-8"))

    def close(self, code: int = CloseReason.NORMAL_CLOSURE, reason: str = "") -> None:
        with self._io:
            if self._ws.state in (ConnectionState.OPEN, ConnectionState.REMOTE_CLOSING):
                with contextlib.suppress(GONE, LocalProtocolError):
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
                    with contextlib.suppress(GONE, LocalProtocolError):
                        self._send_locked(event.response())
            if not data:
                return None
            return events

    def messages(self, go_on: Callable[[], bool], poll: float = POLL) -> Iterator[tuple[bytes, bool]]:
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

    def channel_messages(self, go_on: Callable[[], bool], poll: float = POLL) -> Iterator[tuple[int, bytes]]:
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
