"""Throwaway network namespaces for tests that need the real kernel (keepalived -t, iptables-restore).

Every name carries the lab prefix `kalab-` so a leak is visible and sweepable; each context removes what it made.
"""

from __future__ import annotations

import itertools
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

_counter = itertools.count()


def run_in(ns: str, *argv: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", ns, *argv], check=check, capture_output=True, text=True, input=input, timeout=60
    )


@contextmanager
def netns(interface: str = "eth0", address: str = "192.168.7.13/24") -> Iterator[str]:
    """A namespace named kalab-t<pid>-<n> holding an UP veth `interface` with `address` (its peer stays inside)."""
    name = f"kalab-t{os.getpid()}-{next(_counter)}"
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=30)
    try:
        peer = "peer0" if interface != "peer0" else "peer1"
        for argv in (
            ["link", "add", interface, "type", "veth", "peer", "name", peer],
            ["link", "set", interface, "up"],
            ["link", "set", peer, "up"],
            ["link", "set", "lo", "up"],
            ["addr", "add", address, "dev", interface],
        ):
            subprocess.run(["ip", "-n", name, *argv], check=True, timeout=30)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False, timeout=30)
