"""The one place that talks to the kernel's networking: `ip` batches, commands inside namespaces, small queries.

Why `ip -batch` rather than pyroute2: measured on this 2-core machine, importing pyroute2 0.9 takes ~140 ms and
opening a netlink socket inside each namespace ~6 ms (it forks a helper per namespace), while one
`ip -n <ns> -batch -` costs 2–3 ms and the batches of different namespaces are independent, so they run
concurrently: configuring the whole seed topology takes ~15 ms. It also keeps every change spelled as the `ip`
command a trainee would type.

Safety: every function here works on a named namespace whose name is ``kalab-…``; the only commands run in the
host namespace are `netns add/del` and `link add <name> netns <lab ns> …` (a bridge, or a veth whose peer is placed
with `peer … netns <lab ns>`), which the kernel creates directly inside the lab namespaces; `host_batch` refuses
anything else. So the host never gains a link, a route or a sysctl change.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from kalab.lab.dataplane.entry import HERE, Entry
from kalab.lab.dataplane.naming import LINK_PREFIX, check_lab_ns
from kalab.model.errors import KalabError

NETNS_DIR = Path("/run/netns")
TIMEOUT = 30.0

_LAB_NAME = rf"{LINK_PREFIX}[a-z0-9-]+"
_HOST_LINE = re.compile(
    rf"^netns (?:add|del) {_LAB_NAME}$"
    rf"|^link add {_LAB_NAME} netns {_LAB_NAME} (?:\S+ )*type veth peer name {_LAB_NAME} netns {_LAB_NAME}(?: \S+)*$"
    rf"|^link add {_LAB_NAME} netns {_LAB_NAME} (?:\S+ )*type bridge(?: \S+)*$"
)


class NetlinkError(KalabError):
    """An `ip` or in-namespace command failed; the message names the namespace and the kernel's complaint."""


def list_netns() -> list[str]:
    """Names of all named network namespaces on this machine (what `ip netns list` shows), sorted."""
    try:
        return sorted(os.listdir(NETNS_DIR))
    except FileNotFoundError:
        return []


def netns_exists(ns: str) -> bool:
    return (NETNS_DIR / check_lab_ns(ns)).exists()


def _failure(what: str, stderr: str) -> NetlinkError:
    detail = " ".join(line.strip() for line in stderr.strip().splitlines()[:3]) or "no message"
    return NetlinkError(f"{what} failed: {detail}.")


def host_batch(lines: Sequence[str], *, force: bool = False) -> None:
    """Run `ip -batch` in the host namespace, allowing only lines that create or delete inside lab namespaces.

    With `force`, `ip` carries on past failing lines (used when deleting namespaces that may already be gone).
    """
    for line in lines:
        if not _HOST_LINE.match(line):
            raise NetlinkError(f'Refusing to run "ip {line}" in the host namespace; it could change the host.')
    if not lines:
        return
    argv = ["ip", *(["-force"] if force else []), "-batch", "-"]
    done = subprocess.run(argv, input="\n".join(lines) + "\n", capture_output=True, text=True, timeout=TIMEOUT)
    if done.returncode != 0 and not force:
        raise _failure("Creating lab namespaces and links", done.stderr)


def _run_all(jobs: Sequence[tuple[str, list[str], str | None]]) -> list[str]:
    """Run independent commands at once (threads only wait on children); raise the first failure, in job order.

    Each job is (what it does, argv, stdin text); the result is each job's stdout.
    """

    def one(job: tuple[str, list[str], str | None]) -> subprocess.CompletedProcess[str]:
        _, argv, text = job
        return subprocess.run(argv, input=text, capture_output=True, text=True, timeout=TIMEOUT)

    with ThreadPoolExecutor(max_workers=max(1, len(jobs))) as pool:
        results = list(pool.map(one, jobs))
    for (what, _, _), done in zip(jobs, results, strict=True):
        if done.returncode != 0:
            raise _failure(what, done.stderr or done.stdout)
    return [done.stdout for done in results]


def ns_batches(batches: Mapping[str, Sequence[str]], entry: Entry = HERE) -> None:
    """Run one `ip -n <ns> -batch -` per namespace, all at once (they touch disjoint namespaces)."""
    _run_all(
        [
            (f"Configuring namespace {ns}", entry.ip(ns, "-batch", "-"), "\n".join(lines) + "\n")
            for ns, lines in batches.items()
        ]
    )


def wait_operational(links: Mapping[str, Sequence[str]], timeout: float = 3.0) -> None:
    """Wait until every listed link ({namespace: [ifname, …]}) reports operstate UP.

    The kernel applies a carrier change to a link's operstate — and tells the bridge it may use the port — from a
    deferred work item that, for a link it does not treat as urgent, can run up to a second later; frames sent
    before that are dropped. (Which links are urgent depends on ifindex details; e.g. a veth whose peer has the
    same ifindex number in its own namespace is not.) Polling here means a returned build is ready to carry traffic.
    """
    deadline = time.monotonic() + timeout
    while True:
        names = list(links)
        waiting = []
        for ns, found in zip(names, ip_json_each([(ns, ("link", "show")) for ns in names]), strict=True):
            state = {link["ifname"]: link.get("operstate") for link in found}
            waiting += [f"{ns}/{ifname}" for ifname in links[ns] if state.get(ifname) != "UP"]
        if not waiting:
            return
        if time.monotonic() > deadline:
            raise NetlinkError(f"Links {', '.join(waiting)} did not come up within {timeout:g} s.")
        time.sleep(0.02)


def run_in(
    ns: str,
    argv: Sequence[str],
    *,
    check: bool = True,
    input: str | None = None,
    timeout: float = TIMEOUT,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `argv` inside the lab namespace `ns` (`ip netns exec`), capturing text output.

    With `check`, a non-zero exit raises NetlinkError carrying the command's stderr.
    """
    done = subprocess.run(
        HERE.command(ns, argv),
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(env) if env is not None else None,
    )
    if check and done.returncode != 0:
        raise _failure(f"Running {' '.join(argv)} in {ns}", done.stderr or done.stdout)
    return done


def ip_json(ns: str, *args: str, entry: Entry = HERE) -> list[dict[str, Any]]:
    """`ip -j -d -n <ns> <args>` parsed: e.g. ip_json(ns, "route", "show")."""
    [parsed] = ip_json_each([(ns, args)], entry)
    return parsed


def ip_json_each(queries: Sequence[tuple[str, Sequence[str]]], entry: Entry = HERE) -> list[list[dict[str, Any]]]:
    """Several `ip_json` queries (namespace, args) run at once; results in the same order."""
    outputs = _run_all(
        [(f"ip {' '.join(args)} in {ns}", entry.ip(ns, "-j", "-d", *args), None) for ns, args in queries]
    )
    return [json.loads(text) if text.strip() else [] for text in outputs]


def addresses(ns: str, ifname: str, entry: Entry = HERE) -> list[str]:
    """IPv4 addresses on `ifname` in `ns` as CIDRs, primary first (e.g. ["192.168.7.14/24", "172.21.6.50/32"])."""
    result = []
    for link in ip_json(ns, "-4", "addr", "show", "dev", ifname, entry=entry):
        for info in link.get("addr_info", []):
            if info.get("family") == "inet":
                result.append(f"{info['local']}/{info['prefixlen']}")
    return result


def set_link(ns: str, ifname: str, up: bool, entry: Entry = HERE) -> None:
    """Bring `ifname` in `ns` up or down (down on a node's uplink is how the lab simulates losing that node)."""
    done = subprocess.run(
        entry.ip(ns, "link", "set", "dev", ifname, "up" if up else "down"),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    if done.returncode != 0:
        raise _failure(f"Setting {ifname} {'up' if up else 'down'} in {ns}", done.stderr)


def delete_link(ns: str, ifname: str) -> bool:
    """Delete `ifname` in `ns` (a veth takes its peer with it, synchronously); False when it was not there."""
    done = subprocess.run(
        ["ip", "-n", check_lab_ns(ns), "link", "del", "dev", ifname], capture_output=True, text=True, timeout=TIMEOUT
    )
    if done.returncode == 0:
        return True
    if "Cannot find device" in done.stderr or not netns_exists(ns):
        return False
    raise _failure(f"Deleting {ifname} in {ns}", done.stderr)


def strip_links(ns: str) -> None:
    """Delete every link but `lo` in `ns` (veth peers elsewhere go with them); missing links are no error."""
    names = [link["ifname"] for link in ip_json(ns, "link", "show") if link.get("ifname") != "lo"]
    if names:
        # -force: deleting one veth end also removes its peer, which may come later in the list.
        subprocess.run(
            ["ip", "-force", "-n", check_lab_ns(ns), "-batch", "-"],
            input="".join(f"link del dev {name}\n" for name in names),
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )


def set_forwarding(forwarding: Mapping[str, bool]) -> None:
    """Set net.ipv4.ip_forward inside each namespace ({namespace: on}), never on the host: `ip netns exec` enters
    the namespace first. Explicit, because a new namespace copies the host's value."""
    _run_all(
        [
            (
                f"Setting ip_forward in {ns}",
                HERE.command(ns, ["sysctl", "-qw", f"net.ipv4.ip_forward={int(on)}"]),
                None,
            )
            for ns, on in forwarding.items()
        ]
    )


def delete_netns(names: Sequence[str]) -> list[str]:
    """Delete the named lab namespaces in one batch; return those still present afterwards (normally none).

    The kernel destroys a namespace's links once nothing holds it any more, and deleting one end of a veth
    deletes its peer in the other namespace, so no orphaned end is left behind.
    """
    host_batch([f"netns del {check_lab_ns(ns)}" for ns in names], force=True)
    present = set(list_netns())
    return [ns for ns in names if ns in present]


def netns_pids(names: Sequence[str]) -> dict[str, list[int]]:
    """PIDs of processes living in each named namespace (what `ip netns pids` shows), read from /proc in one pass.

    A namespace that still has processes outlives `ip netns del` (invisibly, with its links), so callers report
    these rather than kill anything: stopping processes is the supervisor's job, by the PIDs it recorded.
    """
    wanted: dict[tuple[int, int], str] = {}
    for ns in names:
        try:
            st = os.stat(NETNS_DIR / check_lab_ns(ns))
        except FileNotFoundError:
            continue
        wanted[(st.st_dev, st.st_ino)] = ns
    found: dict[str, list[int]] = {ns: [] for ns in wanted.values()}
    if not wanted:
        return found
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            st = os.stat(f"/proc/{entry.name}/ns/net")
        except OSError:  # the process exited meanwhile, or is a kernel thread we may not inspect
            continue
        owner = wanted.get((st.st_dev, st.st_ino))
        if owner is not None:
            found[owner].append(int(entry.name))
    return found
