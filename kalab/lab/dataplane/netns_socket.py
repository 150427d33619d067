"""A TCP connection opened inside a lab network namespace, handed back to the caller as a socket.

What a node's container runtime does for `kubectl port-forward`: connect to localhost:port in the pod's network
namespace (IPv4, then IPv6). A short-lived child entered into the namespace (entry.py: the one way into a lab
namespace) makes the connection and passes the connected socket back over a Unix socket pair (SCM_RIGHTS); the
socket stays in the namespace it was made in, so bytes written to it never leave from the host's namespace, and
no relay process lives on for the connection.
"""

from __future__ import annotations

import errno
import socket
import subprocess
import sys
from typing import Final

from kalab.lab.dataplane.entry import Entry

# Run with `python -I -S`: only the standard library, started in a few milliseconds.
_CONNECT: Final = """
import socket, sys
channel = socket.socket(fileno=int(sys.argv[1]))
port, timeout = int(sys.argv[2]), float(sys.argv[3])
failures = []
for family, host, label in ((socket.AF_INET, "127.0.0.1", "IPv4"), (socket.AF_INET6, "::1", "IPv6")):
    conn = socket.socket(family, socket.SOCK_STREAM)
    conn.settimeout(timeout)
    try:
        conn.connect((host, port))
    except OSError as exc:
        failures.append(f"{label}: dial {host} port {port}: {exc.strerror or exc}")
        conn.close()
        continue
    conn.setblocking(True)  # the timeout made the shared file description non-blocking
    socket.send_fds(channel, [b"ok"], [conn.fileno()])
    sys.exit(0)
sys.stderr.write(" ".join(failures))
sys.exit(1)
"""


def connect_in(entry: Entry, ns: str, port: int, timeout: float = 5.0) -> socket.socket:
    """A socket connected to localhost:`port` inside the lab namespace `ns`; OSError when nothing accepts it."""
    if not 0 < port < 65536:
        raise ValueError(f"invalid port {port}")
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with ours:
        with theirs:
            argv = [sys.executable, "-I", "-S", "-c", _CONNECT, str(theirs.fileno()), str(port), f"{timeout:g}"]
            child = subprocess.Popen(
                entry.command(ns, argv),
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
        try:
            _, stderr = child.communicate(timeout=timeout * 2 + 10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.communicate()
            raise OSError(errno.ETIMEDOUT, f"timed out connecting to localhost:{port} inside namespace {ns}") from None
        ours.setblocking(False)
        try:
            _, fds, _, _ = socket.recv_fds(ours, 16, 1)
        except BlockingIOError:
            fds = []
    if fds:
        connected = socket.socket(fileno=fds[0])
        connected.settimeout(None)  # blocking, whatever the child left set on the file description
        return connected
    reason = stderr.decode("utf-8", "replace").strip() or f"the connecting process exited with {child.returncode}"
    raise OSError(errno.ECONNREFUSED, f"failed to connect to localhost:{port} inside namespace {ns!r}, {reason}")
