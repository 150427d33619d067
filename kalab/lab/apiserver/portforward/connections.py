"""What both forms of port forwarding share about one forwarded connection: the pod end the kubelet opens, how its
failure is worded (as the kubelet words it, which kubectl prints and then stops on), and the pacing of the threads
that copy its bytes.
"""

from __future__ import annotations

import socket
from typing import Final

from kalab.lab.apiserver.errors import ApiError

POLL: Final = 0.2  # how often blocked loops look at whether the session ended
CHUNK: Final = 32 * 1024  # bytes per data frame from the pod
JOIN: Final = 5.0  # how long ending a session waits for each of its connection threads


def failure(port: int, pod: str, uid: str, exc: ApiError | OSError) -> str:
    """The error a connection the kubelet could not open reports to the client."""
    reason = exc.message if isinstance(exc, ApiError) else (exc.strerror or str(exc))
    return f"error forwarding port {port} to pod {pod}, uid {uid}: {reason}"


def recv(sock: socket.socket) -> bytes:
    """The next bytes from the pod; b"" once its side is closed (or broken)."""
    try:
        return sock.recv(CHUNK)
    except OSError:
        return b""
