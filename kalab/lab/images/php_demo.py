"""What `quay.io/wangzheng422/php:demo.02` serves, in our own code: the seed's greeting followed by the pod's IP.

The image is `php:apache` with one index.php that prints three `<br>`-terminated lines and then
`getHostByName(getHostName())` — in a pod that is the pod IP, because the pod's /etc/hosts maps its hostname to it.
A lab pod shares the host's hostname (only its network namespace is its own), so the lookup would give the wrong
answer here; instead we take the address of the namespace's own interface, which is what the lookup finds in a pod.

A small asyncio HTTP/1.1 server: `GET`/`HEAD` on `/` or `/index.php` answer the page, anything else is 404/405,
one access-log line per request on stderr, `Connection: close` after every response (what the prober and curl need).

    python -m kalab.lab.images.php_demo [--port 80] [--ip IP] [--bind 0.0.0.0]
"""

from __future__ import annotations

import argparse
import array
import asyncio
import contextlib
import fcntl
import ipaddress
import os
import signal
import socket
import struct
import sys
import time
from collections.abc import Callable, Sequence
from email.utils import formatdate

GREETING = "Hello!<br>Welcome to RedHat Developer<br>Enjoy all of the ad-free articles<br>"
POD_IP_ENV = "POD_IP"  # the downward-API name a pod spec would use; overrides discovery like --ip
_SIOCGIFCONF = 0x8912
_IFREQ_SIZE = 40  # struct ifreq on 64-bit Linux: 16-byte name + 24-byte union
_MAX_HEAD = 16384
_IDLE_TIMEOUT = 10.0  # seconds a client may take to send its request, as Apache's default Timeout is generous
_PAGES = ("/", "/index.php")


def interface_addresses() -> list[tuple[str, str]]:
    """(interface, IPv4) pairs of this network namespace in interface order, via SIOCGIFCONF (no subprocess)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        buf = array.array("B", b"\0" * (_IFREQ_SIZE * 128))
        address, _ = buf.buffer_info()
        ifconf = struct.pack("iL", len(buf), address)
        used, _ = struct.unpack("iL", fcntl.ioctl(sock.fileno(), _SIOCGIFCONF, ifconf))
    raw = buf.tobytes()[:used]
    pairs = []
    for offset in range(0, used, _IFREQ_SIZE):
        name = raw[offset : offset + 16].split(b"\0", 1)[0].decode()
        ip = socket.inet_ntoa(raw[offset + 20 : offset + 24])  # sockaddr_in: family(2) port(2) addr(4)
        pairs.append((name, ip))
    return pairs


def pod_ip(override: str | None = None) -> str:
    """The address this pod's page shows: an explicit override, else the first non-loopback IPv4 of the namespace."""
    chosen = override or os.environ.get(POD_IP_ENV) or ""
    if chosen:
        try:
            return str(ipaddress.IPv4Address(chosen))
        except ValueError:
            raise SystemExit(f"php_demo: {chosen!r} is not an IPv4 address; pass --ip A.B.C.D.") from None
    for _, ip in interface_addresses():
        if not ipaddress.IPv4Address(ip).is_loopback:
            return ip
    # What PHP prints when the lookup fails is the hostname itself; keep the page informative anyway.
    return "127.0.0.1"


class _Clock:
    """Cached HTTP Date and access-log timestamps, recomputed once per second to keep each request cheap."""

    def __init__(self) -> None:
        self._second = -1
        self.http = ""
        self.log = ""

    def tick(self) -> None:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self.http = formatdate(now, usegmt=True)
            self.log = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now))


class _Site:
    def __init__(self, ip: str, log: Callable[[str], object]) -> None:
        self.page = (GREETING + ip).encode()
        self.clock = _Clock()
        self.log = log

    def respond(self, method: str, target: str) -> tuple[bytes, int, int]:
        """The response bytes for one request, its status and body length."""
        path = target.split("?", 1)[0]
        if path not in _PAGES:
            status, reason, body = 404, "Not Found", b"<h1>Not Found</h1>"
        elif method not in ("GET", "HEAD", "POST"):
            status, reason, body = 405, "Method Not Allowed", b"<h1>Method Not Allowed</h1>"
        else:
            status, reason, body = 200, "OK", self.page
        return self.render(status, reason, body, head_only=method == "HEAD"), status, len(body)

    def render(self, status: int, reason: str, body: bytes, head_only: bool = False) -> bytes:
        self.clock.tick()
        head = (
            f"HTTP/1.1 {status} {reason}\r\nDate: {self.clock.http}\r\nServer: kalab-php-demo\r\n"
            f"Content-Type: text/html; charset=UTF-8\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        return head.encode() + (b"" if head_only else body)


class _Request(asyncio.Protocol):
    """One connection: read the request head (and any body), answer, close."""

    def __init__(self, site: _Site) -> None:
        self.site = site
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.peer = "-"
        self.idle: asyncio.TimerHandle | None = None
        self.pending: tuple[bytes, str, int, int] | None = None  # response waiting for the request body
        self.body_left = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.peer = str(peer[0]) if peer else "-"
        self.idle = asyncio.get_running_loop().call_later(_IDLE_TIMEOUT, transport.close)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.idle:
            self.idle.cancel()

    def data_received(self, data: bytes) -> None:
        if self.pending is not None:
            self.body_left -= len(data)
            if self.body_left <= 0:
                self.finish(*self.pending)
            return
        self.buf += data
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buf) > _MAX_HEAD:
                self.fail(431, "Request Header Fields Too Large")
            return
        lines = bytes(self.buf[:end]).decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            self.fail(400, "Bad Request")
            return
        method, target, _ = parts
        length = 0
        expect_continue = False
        for line in lines[1:]:
            key, _, value = line.partition(":")
            key = key.strip().lower()
            if key == "expect":
                expect_continue = value.strip().lower() == "100-continue"
            elif key == "content-length":
                try:
                    length = int(value.strip())
                except ValueError:
                    self.fail(400, "Bad Request")
                    return
        response, status, size = self.site.respond(method, target)
        self.body_left = length - (len(self.buf) - end - 4)
        request_line = lines[0]
        if self.body_left > 0:  # read (and ignore) a POST body before answering, as a server must
            self.pending = (response, request_line, status, size)
            if expect_continue and self.transport:  # curl waits for this before sending a large body
                self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            return
        self.finish(response, request_line, status, size)

    def fail(self, status: int, reason: str) -> None:
        body = f"<h1>{reason}</h1>".encode()
        self.finish(self.site.render(status, reason, body), "-", status, len(body))

    def finish(self, response: bytes, request_line: str, status: int, size: int) -> None:
        assert self.transport is not None
        self.transport.write(response)
        self.transport.close()  # flushes what is buffered, then closes: HTTP/1.1 with Connection: close
        self.pending = None
        self.site.log(f'{self.peer} - - [{self.site.clock.log}] "{request_line}" {status} {size}\n')


async def serve(port: int, ip: str, bind: str = "0.0.0.0", ready: Callable[[], object] | None = None) -> None:
    """Serve until SIGTERM or SIGINT, then close the listener and return."""
    loop = asyncio.get_running_loop()
    site = _Site(ip, sys.stderr.write)
    server = await loop.create_server(lambda: _Request(site), bind, port, reuse_address=True, backlog=1024)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    sys.stderr.write(f"php demo listening on {bind}:{port}, answering as {ip}\n")
    sys.stderr.flush()
    if ready:
        ready()
    async with server:
        await stop.wait()
    sys.stderr.write("php demo stopping\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="php_demo", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=80, help="TCP port (default 80)")
    parser.add_argument("--ip", default=None, help=f"the IP the page shows (default: ${POD_IP_ENV}, else discovered)")
    parser.add_argument("--bind", default="0.0.0.0", help="listen address (default all of the namespace's)")
    args = parser.parse_args(argv)
    if not 0 < args.port < 65536:
        parser.error("--port must be between 1 and 65535")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.port, pod_ip(args.ip), args.bind))
    return 0


if __name__ == "__main__":
    sys.exit(main())
