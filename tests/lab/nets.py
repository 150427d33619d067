"""Two throwaway namespaces joined by a veth pair, for data-plane tests.

The veth is created with both ends placed straight into the test namespaces, so no interface ever appears in the
host namespace; every name carries the `kalab-` prefix and everything is removed on exit.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from kalab.lab.dataplane.topology import Topology, TopologySpec, build, lab_namespaces, sweep
from tests.support.waiting import stop_process, wait_for

_counter = itertools.count()


@dataclass(frozen=True)
class Ns:
    name: str
    ip: str  # without the prefix length


@contextmanager
def linked_pair(
    a_address: str = "10.254.1.1/24", b_address: str = "10.254.1.2/24", interface: str = "eth0"
) -> Iterator[tuple[Ns, Ns]]:
    """Namespaces A and B, each with `interface` UP and its address, joined by one veth pair."""
    n = next(_counter)
    a, b = f"kalab-t{os.getpid()}-p{n}a", f"kalab-t{os.getpid()}-p{n}b"
    made: list[str] = []
    try:
        for name in (a, b):
            subprocess.run(["ip", "netns", "add", name], check=True, timeout=30)
            made.append(name)
        subprocess.run(
            ["ip", "link", "add", "name", interface, "netns", a, "type", "veth", "peer", "name", interface, "netns", b],
            check=True,
            timeout=30,
        )
        for name, address in ((a, a_address), (b, b_address)):
            for argv in (
                ["link", "set", "lo", "up"],
                ["link", "set", interface, "up"],
                ["addr", "add", address, "dev", interface],
            ):
                subprocess.run(["ip", "-n", name, *argv], check=True, timeout=30)
        yield Ns(a, a_address.split("/")[0]), Ns(b, b_address.split("/")[0])
    finally:
        for name in made:  # deleting a namespace deletes the veth end inside it, and so the pair
            subprocess.run(["ip", "netns", "del", name], check=False, timeout=30)


def namespaces_left() -> list[str]:
    """This test process's namespaces that still exist (for leak checks)."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    prefix = f"kalab-t{os.getpid()}-p"
    return [line.split()[0] for line in out.splitlines() if line.startswith(prefix)]


@contextmanager
def demo_server(ns: str, log: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """The php demo running in `ns` (stderr, i.e. its access log, into `log`); stopped by its PID on exit."""
    with log.open("wb") as err:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-m", "kalab.lab.images.php_demo", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            env={**os.environ, **(env or {})},
        )
    try:
        wait_for(lambda: b"listening" in log.read_bytes() or proc.poll() is not None, 15, "the demo to listen")
        assert proc.poll() is None, log.read_text()
        yield proc
    finally:
        stop_process(proc)


def curl(ns: str, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """curl from inside `ns` (never from the host namespace)."""
    return subprocess.run(
        ["ip", "netns", "exec", ns, "curl", "-sS", "--max-time", "5", *args, url],
        capture_output=True,
        text=True,
        timeout=30,
    )


def seed_topology(prefix: str) -> Iterator[Topology]:
    """The seed's topology under `prefix` for a fixture to yield; afterwards nothing of it may remain."""
    topology = build(TopologySpec.seed(prefix))
    try:
        yield topology
    finally:
        sweep(prefix)
        assert lab_namespaces(prefix) == []
