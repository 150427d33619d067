"""Port forwarding over the websocket channel protocol (v4.channel.k8s.io and its base64 form), as the kubelet's
websocket server speaks it.

The ports are named in the query (`?ports=9650`); each gets a data channel (2i) and an error channel (2i+1), both
opened by the server with the port as two little-endian bytes. There is one connection per port, and the
websocket closes once every port's connection has ended.
"""

from __future__ import annotations

import contextlib
import queue
import socket
import struct
import threading
from typing import Final
from urllib.parse import parse_qs, urlsplit

from wsproto.events import CloseConnection

from kalab.lab.apiserver.errors import ApiError, bad_request
from kalab.lab.apiserver.hooks import PodHooks
from kalab.lab.apiserver.portforward.connections import JOIN, POLL, failure, recv
from kalab.lab.apiserver.streams.exchange import ClientGone, write_status
from kalab.lab.apiserver.streams.wsstream import (
    ChannelProtocol,
    Refused,
    WebSocket,
    negotiate,
    write_switching_protocols,
)
from kalab.lab.apiserver.transport import Exchange

# The kubelet's websocket port forward: v4 channels only (no v5 close signal), binary or base64.
CHANNEL_PROTOCOLS: Final = (
    ChannelProtocol("v4.channel.k8s.io", 4, False),
    ChannelProtocol("v4.base64.channel.k8s.io", 4, True),
)


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


def serve_channels(handler: Exchange, hooks: PodHooks, namespace: str, pod: str, uid: str) -> None:
    """Upgrade the request to websocket channels and forward each port to the pod until the client leaves."""
    try:
        ports = _query_ports(handler.request.target)
        key, protocol = negotiate(
            handler,
            CHANNEL_PROTOCOLS,
            "Upgrade request required: pods/portforward is served over SPDY/3.1 or websocket",
        )
    except ApiError as error:
        write_status(handler, error)
        return
    except Refused as refused:
        write_status(handler, refused.error, refused.headers)
        return
    try:
        sock, leftover = write_switching_protocols(handler, key, protocol)
    except OSError:
        return
    _ChannelSession(WebSocket(sock, protocol, leftover), hooks, namespace, pod, uid, ports).run()


class _ChannelSession:
    """Websocket port forwarding: this thread reads the client, one thread per port copies from the pod."""

    def __init__(self, ws: WebSocket, hooks: PodHooks, namespace: str, pod: str, uid: str, ports: list[int]) -> None:
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
        except ClientGone:
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
                thread.join(timeout=JOIN)
            self.ws.close()
            self._await_close()

    def _read_client(self, threads: list[threading.Thread]) -> None:
        for channel, payload in self.ws.channel_messages(lambda: any(thread.is_alive() for thread in threads), POLL):
            self._dispatch(channel, payload)

    def _await_close(self) -> None:
        """After our close frame, the client's, for a little while (RFC 6455's closing handshake)."""
        with contextlib.suppress(Exception):
            for _ in range(int(JOIN / POLL)):
                events = self.ws.receive(POLL)
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
            message = failure(port, self.pod, self.uid, exc)
            with contextlib.suppress(ClientGone):
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
            while data := recv(sock):
                self.ws.send_channel(2 * index, data)
        except ClientGone:
            self.gone.set()
        finally:
            self.to_pod[index].put(None)
            if writer.is_alive():
                writer.join(timeout=JOIN)
            sock.close()

    def _to_pod(self, index: int, sock: socket.socket) -> None:
        while (data := self.to_pod[index].get()) is not None:
            try:
                sock.sendall(data)
            except OSError:
                return
