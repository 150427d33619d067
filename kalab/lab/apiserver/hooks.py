"""What the API server asks of the kubelet for pod subresources it cannot answer from storage.

`pods/log`, `pods/exec`, `pods/portforward` and `pods/{name}:{port}/proxy` need the running programs; the kubelet
controller provides an implementation, the API server only speaks the protocols (HTTP streaming, websocket channels,
SPDY streams, proxying).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class LogRequest:
    namespace: str
    pod: str
    container: str | None  # None: the pod's only container (an error if it has several)
    follow: bool = False
    previous: bool = False
    timestamps: bool = False
    tail_lines: int | None = None
    since_seconds: int | None = None


@dataclass(frozen=True)
class ExecRequest:
    namespace: str
    pod: str
    container: str | None
    command: Sequence[str]
    stdin: bool = False
    tty: bool = False


class ExecSession(Protocol):
    """A running command: write stdin, read stdout/stderr as they come, then its exit code."""

    def write_stdin(self, data: bytes) -> None: ...
    def close_stdin(self) -> None: ...
    def read(self, timeout: float) -> tuple[int, bytes] | None:
        """(stream 1 = stdout or 2 = stderr, bytes); None when nothing came within `timeout`; (0, b"") at EOF."""
        ...

    def resize(self, width: int, height: int) -> None: ...
    def wait(self, timeout: float | None = None) -> int: ...
    def kill(self) -> None: ...


@dataclass(frozen=True)
class ProxyResponse:
    status: int
    headers: Sequence[tuple[str, str]]
    body: bytes


class PodHooks(Protocol):
    def logs(self, request: LogRequest) -> Iterator[bytes]:
        """Log lines (with their newline) until the end, or, when following, until the container stops."""
        ...

    def exec(self, request: ExecRequest) -> ExecSession: ...

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
        """An HTTP request to the pod's IP:port, made from inside the lab (the pod's node namespace)."""
        ...

    def port_forward(self, namespace: str, pod: str, port: int) -> socket.socket:
        """A TCP connection to `port` on the pod's localhost, opened inside the pod's network namespace.

        The caller owns (and closes) the socket. Raises ApiError when the pod cannot be reached and OSError when
        nothing accepts the connection; the API server reports either on the port forward's error stream.
        """
        ...
