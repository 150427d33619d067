"""The node-debug image: what `kubectl debug node/…` and `oc debug node/…` run, played on a lab node.

Both create a pod on the node with the host's network, PID and IPC namespaces and the node's `/` mounted at
/host, from a tools image (registry.redhat.io/rhel8/support-tools on OpenShift), and users then type
`chroot /host <command>` to act on the node itself. A lab node is a network namespace of the lab's tree, whose
file system is the machine's as the lab sees it, so the container's command runs as a process in the pod's
network namespace (the node's, with hostNetwork), and `chroot /host` is taken for what it means there: run the rest
on the node. Without a command the image's default, a shell, runs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

# The tools images the two commands are given: OpenShift's support-tools (what `oc debug node` uses on RHCOS
# clusters) and the usual small images people pass to `kubectl debug node --image=`.
IMAGES: Final = (
    "registry.redhat.io/rhel8/support-tools",
    "registry.redhat.io/rhel9/support-tools",
    "registry.access.redhat.com/rhel8/support-tools",
    "registry.access.redhat.com/ubi8/ubi",
    "registry.access.redhat.com/ubi9/ubi",
    "quay.io/openshift/origin-cli",
    "busybox",
    "docker.io/library/busybox",
    "ubuntu",
    "docker.io/library/ubuntu",
)
NODE_ROOT: Final = "/"
HOST: Final = "/host"
DEFAULT_COMMAND: Final = ("/bin/bash",)  # support-tools' CMD


def mounts_node_root(pod: Mapping[str, Any], container: Mapping[str, Any]) -> bool:
    """The container mounts a hostPath volume of the node's `/` at /host."""
    roots = {
        str(v.get("name"))
        for v in (pod.get("spec") or {}).get("volumes") or []
        if str((v.get("hostPath") or {}).get("path") or "").rstrip("/") == "" and "hostPath" in v
    }
    return any(
        str(m.get("mountPath") or "").rstrip("/") == HOST and str(m.get("name")) in roots
        for m in container.get("volumeMounts") or []
    )


def node_command(pod: Mapping[str, Any], container: Mapping[str, Any], words: Sequence[str]) -> tuple[str, ...]:
    """What runs on the node for the container's command + args (`chroot /host CMD` → CMD)."""
    argv = list(words) or list(DEFAULT_COMMAND)
    if len(argv) >= 2 and argv[0] in ("chroot", "/usr/sbin/chroot", "/sbin/chroot") and argv[1].rstrip("/") == HOST:
        if not mounts_node_root(pod, container):
            # What chroot itself says when /host is not the node's root in the container.
            return (
                "sh",
                "-c",
                f"echo \"chroot: cannot change root directory to '{HOST}': No such file or directory\" >&2; exit 125",
            )
        argv = argv[2:] or list(DEFAULT_COMMAND)
    return tuple(argv)
