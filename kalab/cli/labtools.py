"""What the lab commands share: the root check and finding the lab a command should act on."""

from __future__ import annotations

import os

from kalab.model.errors import KalabError


def require_root(command: str) -> None:
    if os.geteuid() != 0:
        raise KalabError(f"kalab {command} builds and enters network namespaces, which needs root; run it with sudo.")


def running_bastion(prefix: str) -> str | None:
    """The bastion namespace of the lab at `prefix`, if that lab is up."""
    from kalab.lab.dataplane import naming, netlink

    ns = naming.bastion_ns(prefix)
    return ns if netlink.netns_exists(ns) else None
