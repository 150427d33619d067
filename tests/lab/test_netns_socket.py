"""netns_socket.connect_in: the connected socket comes back from the child blocking and usable; refusals say why.

The namespace is the one part left out here (an entry that runs the child where the test runs); entering a lab's
namespace is entry.py's, and tests/lab/test_kubectl_lab.py forwards into real lab pods."""

from __future__ import annotations

import contextlib
import errno
import socket
import threading
from collections.abc import Iterator, Sequence

import pytest

from kalab.lab.dataplane.entry import Entry
from kalab.lab.dataplane.netns_socket import connect_in


class _Here(Entry):
    """Runs the command as it is: the test's own network namespace stands in for the lab's."""

    def command(self, ns: str, argv: Sequence[str]) -> list[str]:
        return list(argv)


@pytest.fixture
def echo_port() -> Iterator[int]:
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)

    def serve() -> None:
        with contextlib.suppress(OSError):
            conn, _ = listener.accept()
            with conn:
                conn.settimeout(10)
                while data := conn.recv(65536):
                    conn.sendall(data)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()
        thread.join(timeout=10)


def test_the_socket_comes_back_connected_and_blocking(echo_port: int) -> None:
    sock = connect_in(_Here(), "test", echo_port, timeout=5)
    with sock:
        assert sock.getblocking() and sock.gettimeout() is None
        assert sock.getpeername() == ("127.0.0.1", echo_port)
        sock.sendall(b"x" * 200_000)
        sock.shutdown(socket.SHUT_WR)
        got = b""
        sock.settimeout(10)
        while chunk := sock.recv(65536):
            got += chunk
        assert got == b"x" * 200_000


def test_a_closed_port_is_refused_with_both_families_named() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
    with pytest.raises(OSError) as caught:
        connect_in(_Here(), "kalab-pod-x", port, timeout=5)
    assert caught.value.errno == errno.ECONNREFUSED
    message = str(caught.value.strerror)
    assert message.startswith(f"failed to connect to localhost:{port} inside namespace 'kalab-pod-x', IPv4: ")
    assert "IPv6: " in message


def test_ports_out_of_range_are_refused_before_anything_runs() -> None:
    with pytest.raises(ValueError):
        connect_in(_Here(), "test", 0)
