"""Who holds a VIP, moment by moment: netlink address events from every node, timestamped as they arrive.

`ip -n <ns> monitor address` listens on the node's netlink socket (it sends nothing on the network), so a VIP
appearing or vanishing is seen within a millisecond or two, far finer than polling could manage.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import IO

import pandas as pd

from kalab.lab.dataplane.entry import HERE, Entry
from kalab.lab.dataplane.netlink import addresses
from kalab.model.errors import KalabError


class VipWatcher:
    """Follows one VIP on one interface across nodes; `events()` is a (t, node, holds) change log."""

    def __init__(self, node_namespaces: Mapping[str, str], interface: str, vip: str, entry: Entry = HERE) -> None:
        self.interface = interface
        self.vip = vip
        self._needle = f"inet {vip}/"
        self._cond = threading.Condition()
        self._state: dict[str, bool] = {}
        self._events: list[tuple[float, str, bool]] = []
        self._procs: list[subprocess.Popen[str]] = []
        self._threads: list[threading.Thread] = []
        try:
            for node, ns in node_namespaces.items():
                # Listen first, then read the current state, so no change can fall between the two.
                proc = subprocess.Popen(
                    entry.ip(ns, "monitor", "address", "dev", interface),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                    text=True,
                    bufsize=1,
                )
                self._procs.append(proc)
                thread = threading.Thread(target=self._follow, args=(node, proc.stdout), daemon=True)
                self._threads.append(thread)
                thread.start()
            now = time.time()
            for node, ns in node_namespaces.items():
                self._record(node, any(a.startswith(vip + "/") for a in addresses(ns, interface, entry)), now)
        except BaseException:
            self.close()
            raise

    def _record(self, node: str, holds: bool, t: float) -> None:
        with self._cond:
            if self._state.get(node) != holds:
                self._state[node] = holds
                self._events.append((t, node, holds))
                self._cond.notify_all()

    def _follow(self, node: str, stream: IO[str] | None) -> None:
        assert stream is not None
        for line in stream:
            t = time.time()
            if self._needle in line:
                self._record(node, not line.startswith("Deleted"), t)

    def holders(self) -> list[str]:
        with self._cond:
            return sorted(node for node, holds in self._state.items() if holds)

    def wait_for(self, predicate: Callable[[list[str]], bool], timeout: float, what: str) -> list[str]:
        """Block until `predicate(holders)` is true; raise with `what` in the sentence after `timeout` s."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                holders = sorted(node for node, holds in self._state.items() if holds)
                if predicate(holders):
                    return holders
                left = deadline - time.monotonic()
                if left <= 0:
                    shown = ", ".join(holders) or "no node"
                    raise KalabError(f"Waited {timeout:g} s for {what}, but {self.vip} is held by {shown}.")
                self._cond.wait(left)

    def events(self) -> pd.DataFrame:
        with self._cond:
            return pd.DataFrame(self._events, columns=["t", "node", "holds"])

    def close(self) -> None:
        for proc in self._procs:  # our own children, ended by their Popen handles
            if proc.poll() is None:
                proc.terminate()
        for proc in self._procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        for thread in self._threads:
            thread.join(timeout=5)

    def __enter__(self) -> VipWatcher:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
