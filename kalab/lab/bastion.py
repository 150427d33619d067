"""What the lab's failover targets share: their clients live in the bastion, and the lab can break anything."""

from __future__ import annotations

from kalab.lab.dataplane.entry import Entry
from kalab.model.clientsite import ClientPlace
from kalab.model.vrrp import FailureKind


def bastion_clients(entry: Entry, bastion_ns: str) -> ClientPlace:
    """The lab's bastion as the place clients run, entered the lab's one way (see dataplane/entry.py)."""
    return ClientPlace(
        f"the lab's bastion (network namespace {bastion_ns}: 192.168.7.1, 172.21.6.10)",
        tuple(entry.command(bastion_ns, [])),
    )


class BastionClients:
    """Mixin for the lab's failover targets (kalab.cluster.failover.FailoverTarget); subclasses name the bastion
    and how this process enters the lab."""

    @property
    def bastion_ns(self) -> str:
        raise NotImplementedError

    @property
    def entry(self) -> Entry:
        raise NotImplementedError

    @property
    def clients(self) -> ClientPlace:
        return bastion_clients(self.entry, self.bastion_ns)

    @property
    def failure_kinds(self) -> tuple[FailureKind, ...]:
        return tuple(FailureKind)  # the lab owns its nodes' processes and links
