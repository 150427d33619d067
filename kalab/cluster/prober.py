"""The prober: HTTP requests on a fixed schedule, one fresh TCP connection each, one row per request.

It is what a trainee's `while true; do curl VIP; sleep 0.01; done` measures, but trustworthy: request i is sent at
start + i/rate whether or not earlier requests have answered (a client after a failover does not wait for the
previous one either), every request gets a row even when it fails, and the summary reports how late sends really
were. It runs as its own process: `kalab.cluster.probejob.start_probe` launches it from this machine, or where a
`ClientPlace` says the cluster's clients are (the lab's site plugin says: its bastion namespace, entered the lab's
own way, since lab addresses must never be probed from the host's). Run directly it probes from whatever
namespace it is in. Its records and statistics are kalab.model.probes'.

    python -m kalab.cluster.prober URL --for SECONDS --rate HZ --out FILE.csv [--timeout S]

stdout gets one JSON line when sending starts ({"started": unix_time}) and the summary as the last JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import gc
import ipaddress
import json
import re
import resource
import socket
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from kalab.model.errors import KalabError

if TYPE_CHECKING:
    pass  # imported lazily: the prober itself must start fast and stay light
from kalab.model.probes import MAX_DURATION, MAX_RATE, ProbeRecord, check_limits, summarise, write_csv

_MAX_RESPONSE = 1 << 20
_START_LEAD = 0.02  # seconds between planning and the first send, so the first request is not already late
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$"
)

_Row = tuple[int, float, float, bool, int | None, str, str | None, float]


@dataclass(frozen=True)
class Target:
    host: str  # as written in the URL; sent as the Host header
    ip: str  # the IPv4 address connected to
    port: int
    path: str

    def request(self) -> bytes:
        host = self.host if self.port == 80 else f"{self.host}:{self.port}"
        return (
            f"GET {self.path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: kalab-probe\r\nAccept: */*\r\n"
            "Connection: close\r\n\r\n"
        ).encode()


# ---------------------------------------------------------------------------------------------------------------
# Validation


def parse_url(url: str, resolve: bool = True) -> Target:
    """Check `url` is http://HOST[:PORT][/PATH] with an IPv4 address or DNS name; resolve a name once, up front."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise KalabError(f"The probe URL {url!r} has an invalid port; use a number between 1 and 65535.") from None
    if parts.scheme != "http":
        raise KalabError(f"The probe URL {url!r} must start with http:// (the prober speaks plain HTTP only).")
    if parts.username is not None or parts.password is not None:
        raise KalabError(f"The probe URL {url!r} carries credentials; remove the user:password@ part.")
    host = parts.hostname or ""
    if port == 0:
        raise KalabError(f"The probe URL {url!r} has port 0; use a number between 1 and 65535.")
    if not host or ":" in host:
        raise KalabError(f"The probe URL {url!r} needs an IPv4 address or a host name (IPv6 is not supported).")
    looks_numeric = all(label.isdigit() for label in host.rstrip(".").split("."))
    if looks_numeric:
        try:
            ip = str(ipaddress.IPv4Address(host))
        except ValueError:
            raise KalabError(f"The probe URL {url!r} has {host!r}, which is not a valid IPv4 address.") from None
    elif not _HOSTNAME.match(host):
        raise KalabError(f"The probe URL {url!r} has {host!r}, which is neither an IPv4 address nor a host name.")
    else:
        ip = _resolve(host, url) if resolve else host
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    if any(ch.isspace() or ord(ch) < 32 for ch in path):
        raise KalabError(f"The probe URL {url!r} has spaces or control characters in its path; percent-encode them.")
    return Target(host, ip, port or 80, path)


def _resolve(host: str, url: str) -> str:
    try:
        infos = socket.getaddrinfo(host, None, socket.AF_INET, socket.SOCK_STREAM)
    except OSError:
        raise KalabError(f"The probe URL {url!r} names {host!r}, which does not resolve to an IPv4 address.") from None
    return str(infos[0][4][0])


def _ensure_descriptors(rate: float, timeout: float) -> None:
    """Every request in flight holds a socket; during an outage up to rate × timeout of them wait at once."""
    needed = int(rate * timeout) + 64
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        ceiling = hard if hard != resource.RLIM_INFINITY else needed
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(needed, soft), ceiling), hard))
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        raise KalabError(
            f"The probe needs {needed} open files at {rate:g} Hz with a {timeout:g} s timeout but may "
            f"open {soft}; lower the rate or the timeout."
        )


# ---------------------------------------------------------------------------------------------------------------
# Probing


class _Exchange(asyncio.Protocol):
    """Send the request, collect the response until the server closes or Content-Length is reached."""

    def __init__(self, request: bytes, done: asyncio.Future[bytes]) -> None:
        self.request = request
        self.done = done
        self.buf = bytearray()
        self.expected: int | None = None  # total response size once the head is known
        self.transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.expected is None:
            end = self.buf.find(b"\r\n\r\n")
            if end >= 0:
                match = re.search(rb"(?im)^content-length:\s*(\d+)\s*$", bytes(self.buf[:end]))
                self.expected = end + 4 + int(match.group(1)) if match else -1
        if (self.expected is not None and 0 <= self.expected <= len(self.buf)) or len(self.buf) > _MAX_RESPONSE:
            self._settle()
            if self.transport:
                self.transport.close()

    def eof_received(self) -> bool:
        self._settle()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None and not self.buf and not self.done.done():
            self.done.set_exception(exc)
        self._settle()

    def _settle(self) -> None:
        if not self.done.done():
            self.done.set_result(bytes(self.buf))


def _parse_response(raw: bytes) -> tuple[int | None, str | None]:
    """The status code and the pod IP the demo page ends with (None when the page has none)."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    match = re.match(rb"HTTP/1\.[01] (\d{3})", head)
    if not match or not sep:
        return None, None
    text = body.decode("utf-8", "replace")
    backend = None
    if "<br>" in text:
        token = text.rsplit("<br>", 1)[1].strip()
        with contextlib.suppress(ValueError):
            backend = str(ipaddress.ip_address(token))
    return int(match.group(1)), backend


def _error_name(err: OSError) -> str:
    if err.errno is not None and err.errno in errno.errorcode:
        return errno.errorcode[err.errno]
    return type(err).__name__


async def probe(
    url: str | Target,
    duration: float,
    rate: float,
    timeout: float = 1.0,
    on_start: Callable[[float], object] | None = None,
) -> list[ProbeRecord]:
    """Probe `url` for `duration` seconds at `rate` requests/s; one record per planned request, in order."""
    planned = check_limits(duration, rate, timeout)
    target = url if isinstance(url, Target) else parse_url(url)
    _ensure_descriptors(rate, timeout)
    loop = asyncio.get_running_loop()
    request = target.request()
    rows: list[_Row | None] = [None] * planned
    in_flight: set[asyncio.Task[None]] = set()
    # Wall-clock send times come from the monotonic loop clock plus one offset, so they keep µs resolution and
    # never jump if NTP steps the clock mid-probe.
    offset = time.time() - loop.time()

    async def one(seq: int, due: float) -> None:
        sent = loop.time()
        status: int | None = None
        backend: str | None = None
        error = ""
        transport: asyncio.Transport | None = None
        try:
            async with asyncio.timeout(timeout):
                done: asyncio.Future[bytes] = loop.create_future()
                transport, _ = await loop.create_connection(lambda: _Exchange(request, done), target.ip, target.port)
                raw = await done
            status, backend = _parse_response(raw)
            if status is None:
                error = "bad response"
            elif status != 200:
                error = f"HTTP {status}"
        except TimeoutError:
            error = "timeout"
        except OSError as err:
            error = _error_name(err)
        finally:
            if transport is not None:
                transport.abort()
        ok = status == 200
        # A plain tuple of atomic values, which the garbage collector stops tracking: a long probe's rows must not
        # make each collection (a pause in the send schedule) longer.
        rows[seq] = (
            seq,
            sent + offset,
            (loop.time() - sent) * 1000.0,
            ok,
            status,
            error,
            backend if ok else None,
            (sent - due) * 1000.0,
        )

    # Objects from before the probe never become garbage during it: keep collections from scanning them.
    gc.collect()
    gc.freeze()
    try:
        start = loop.time() + _START_LEAD
        if on_start:
            on_start(start + offset)
        interval = 1.0 / rate
        for seq in range(planned):
            due = start + seq * interval
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            # Never wait for earlier requests: each one is its own task, started on schedule (late ones at once).
            task = loop.create_task(one(seq, due))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
        if in_flight:
            await asyncio.gather(*in_flight)
    finally:
        for task in list(in_flight):  # only when interrupted: requests still out are abandoned with the probe
            task.cancel()
        gc.unfreeze()
    return [
        ProbeRecord(seq, round(t, 6), round(latency, 3), ok, status, error, backend, round(lag, 3))
        for seq, t, latency, ok, status, error, backend, lag in (r for r in rows if r is not None)
    ]


def run_probe(url: str, duration: float, rate: float, timeout: float = 1.0) -> list[ProbeRecord]:
    """Synchronous `probe` (it starts its own event loop, so call it from plain code, not from a running loop)."""
    return asyncio.run(probe(url, duration, rate, timeout))


# ---------------------------------------------------------------------------------------------------------------
# Command line


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kalab.cluster.prober", description=__doc__.splitlines()[0])
    parser.add_argument("url", help="http://HOST[:PORT][/PATH]")
    parser.add_argument("--for", dest="duration", type=float, required=True, help=f"seconds (≤ {MAX_DURATION:g})")
    parser.add_argument("--rate", type=float, default=100.0, help=f"requests per second (≤ {MAX_RATE:g}, default 100)")
    parser.add_argument("--timeout", type=float, default=1.0, help="per-request timeout in seconds (default 1)")
    parser.add_argument("--out", type=Path, required=True, help="CSV file to write, one row per request")
    args = parser.parse_args(argv)

    def started(t0: float) -> None:
        print(json.dumps({"started": round(t0, 6)}), flush=True)

    try:
        records = asyncio.run(probe(args.url, args.duration, args.rate, args.timeout, on_start=started))
        write_csv(records, args.out)
    except KalabError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(summarise(records, args.rate).to_dict()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
