"""Entering a lab node: the one way kalab runs a command in one of a lab's network namespaces.

A lab lives in its own namespace tree (tree.py), and its network namespaces have names only inside that tree's
private mount namespace. From inside the tree (the lab daemon, its kubelet and supervisor, a throwaway scenario)
a node is entered with `ip netns exec`. From outside (the `kalab` command, a notebook's kernel) `nsenter` first
joins the tree's user, mount and PID namespaces through the lab's top process, so what runs there sees the lab's
namespaces, may configure them (and only them), and ends with the lab. It is what `oc debug node/…` is on OpenShift.

    HERE.command("kalab-bastion", ["curl", "-s", "http://172.21.6.33/"])      # inside a tree
    Entry(top_pid, top_start).command("kalab-bastion", ["curl", …])           # from anywhere else
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from kalab.lab.dataplane import procfs
from kalab.lab.dataplane.naming import check_lab_ns
from kalab.lab.dataplane.tree import with_sbin
from kalab.model.errors import KalabError

_DIE_WITH_PARENT = ("setpriv", "--pdeathsig", "KILL", "--")


@dataclass(frozen=True)
class Entry:
    """How this process reaches a lab's nodes: `top_pid` None means it already lives in the lab's tree."""

    top_pid: int | None = None
    top_start: int | None = None  # the top process's start time, so a reused PID is never entered

    def alive(self) -> bool:
        return self.top_pid is None or procfs.starttime(self.top_pid) == self.top_start

    def prefix(self) -> list[str]:
        """What joins the lab's tree: nothing from inside; `nsenter` through the top process from outside.

        --preserve-credentials: the tree maps its root to the user who started it, so that user already is root
        in there (and may not call setgroups, which nsenter would otherwise do). `nsenter` forks the command into
        the lab's PID namespace (so it also ends with the lab) but does not pass signals on; `setpriv
        --pdeathsig` on both sides makes the command end when its `nsenter` does, and that when its caller does.
        """
        if self.top_pid is None:
            return []
        if not self.alive():
            raise KalabError(f"The lab whose top process was {self.top_pid} is no longer running; start it again.")
        return [
            *_DIE_WITH_PARENT,
            "nsenter",
            f"--target={self.top_pid}",
            "--user",
            "--mount",
            "--pid",
            "--preserve-credentials",
            "--",
            *_DIE_WITH_PARENT,
        ]

    def command(self, ns: str, argv: Sequence[str]) -> list[str]:
        """The command line that runs `argv` in the lab namespace `ns`."""
        return [*self.prefix(), "ip", "netns", "exec", check_lab_ns(ns), *argv]

    @staticmethod
    def env() -> dict[str, str]:
        """The environment a node command runs with: the caller's, with sbin on PATH as a node's root has it (an
        ordinary user's PATH lacks it, and iptables, sysctl and keepalived live there)."""
        return {**os.environ, "PATH": with_sbin(os.environ.get("PATH", ""))}

    def ip(self, ns: str, *args: str) -> list[str]:
        """`ip -n <ns> <args>`: iproute2 entering the namespace itself (cheaper than `ip netns exec ns ip …`)."""
        return [*self.prefix(), "ip", "-n", check_lab_ns(ns), *args]

    def host_pid(self, pid: int) -> int | None:
        """The PID to signal from this process for `pid` as the lab's processes see it (None: no such process)."""
        if self.top_pid is None:
            return pid
        if not self.alive():
            return None
        return procfs.pid_in_namespace_of(self.top_pid, pid)


HERE = Entry()
