"""What the lab's failover targets share: their clients live in the bastion, and the lab can break anything."""

from __future__ import annotations

from kalab.model.vrrp import FailureKind


class BastionClients:
    """Mixin for the lab's failover targets (kalab.cluster.failover.FailoverTarget); subclasses name the bastion."""

    @property
    def bastion_ns(self) -> str:
        raise NotImplementedError

    @property
    def client_netns(self) -> str:
        return self.bastion_ns

    @property
    def failure_kinds(self) -> tuple[FailureKind, ...]:
        return tuple(FailureKind)  # the lab owns its nodes' processes and links
