"""The node-debug image: what `kubectl debug node/…` and `oc debug node/…` run, played on a lab node.

Both create a pod on the node with the host's network, PID and IPC namespaces and the node's `/` mounted at
/host, from a tools image (registry.redhat.io/rhel8/support-tools on OpenShift), and users then type
`chroot /host <command>` to act on the node itself. A lab node is a network namespace of the lab's tree, whose
file system is the machine's as the lab sees it, so the container's command runs as a process in the pod's
network namespace (the node's, with hostNetwork), and `chroot /host` is taken for what it means there: run the rest
on the node. Without a command the image's default, a shell, runs.

An interactive container (`stdin: true`, what `-it` asks for) reads its input from a FIFO in the pod's directory,
opened read-write by the container itself so that a client detaching never ends its input (the API's
stdinOnce=false); `pods/attach` writes what the client types into it. With `tty: true` the command runs under
util-linux `script`, which gives it a terminal as a runtime would and also writes the terminal's output, prompts
without their newline included, to a file that attach follows. An interactive shell knows `chroot /host` as
"a shell on the node", which here is the shell it already is.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from kalab.model import objects

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
_SHELLS: Final = frozenset({"bash", "sh", "/bin/bash", "/bin/sh", "/usr/bin/bash", "/usr/bin/sh"})
_CHROOTS: Final = frozenset({"chroot", "/usr/sbin/chroot", "/sbin/chroot", "/usr/bin/chroot"})
# The interactive shell's start-up file: a root prompt like support-tools' and `chroot /host` as a nested shell.
_RC: Final = """PS1='sh-5.1# '
chroot() {
  if [ "${1%/}" = /host ]; then
    shift
    if [ $# -eq 0 ]; then bash --rcfile "$KALAB_DEBUG_RC" -i; else command "$@"; fi
  else
    command chroot "$@"
  fi
}
"""


def stdin_fifo(pod_root: Path, container: str) -> Path:
    """Where an interactive container of the pod whose directory is `pod_root` reads its input from."""
    return pod_root / "stdin" / container


def typescript(pod_root: Path, container: str) -> Path:
    """A tty container's terminal output as it comes, partial lines included (its log has whole lines only)."""
    return pod_root / "stdin" / f"{container}.typescript"


def terminal_output(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """A typescript without the lines `script` adds around the session ("Script started on …", "Script done …")."""
    header = True
    for chunk in chunks:
        if header:
            _, newline, chunk = chunk.partition(b"\n")
            header = not newline
        footer = chunk.find(b"\nScript done on ")
        if footer >= 0:
            if footer:
                yield chunk[:footer]
            return
        if chunk:
            yield chunk


def mounts_node_root(pod: Mapping[str, Any], container: Mapping[str, Any]) -> bool:
    """The container mounts a hostPath volume of the node's `/` at /host."""
    roots = {
        str(v.get("name"))
        for v in objects.spec(pod).get("volumes") or []
        if "hostPath" in v and str((v.get("hostPath") or {}).get("path") or "").rstrip("/") == ""
    }
    return any(
        str(m.get("mountPath") or "").rstrip("/") == HOST and str(m.get("name")) in roots
        for m in container.get("volumeMounts") or []
    )


def node_command(pod: Mapping[str, Any], container: Mapping[str, Any], words: Sequence[str]) -> tuple[str, ...]:
    """What runs on the node for the container's command + args (`chroot /host CMD` → CMD)."""
    argv = list(words) or list(DEFAULT_COMMAND)
    if len(argv) >= 2 and argv[0] in _CHROOTS and argv[1].rstrip("/") == HOST:
        if not mounts_node_root(pod, container):
            # What chroot itself says when /host is not the node's root in the container.
            message = f"chroot: cannot change root directory to '{HOST}': No such file or directory"
            return ("sh", "-c", f'echo "{message}" >&2; exit 125')
        argv = argv[2:] or list(DEFAULT_COMMAND)
    return tuple(argv)


def program(
    pod: Mapping[str, Any], container: Mapping[str, Any], words: Sequence[str], pod_root: Path
) -> tuple[tuple[str, ...], dict[str, str], Callable[[], None] | None]:
    """(argv, extra env, prepare) for a node-debug container; interactive ones read from their stdin FIFO."""
    argv = node_command(pod, container, words)
    if not container.get("stdin"):
        return argv, {}, None
    name = str(container.get("name") or "")
    fifo = stdin_fifo(pod_root, name)
    rc = fifo.with_name(f"{name}.bashrc")
    env = {"KALAB_DEBUG_RC": str(rc)}
    if len(argv) == 1 and argv[0] in _SHELLS:
        argv = ("bash", "--rcfile", str(rc), "-i")
    if container.get("tty"):
        env["TERM"] = "xterm"
        argv = ("script", "-qfec", shlex.join(argv), str(typescript(pod_root, name)))

    def prepare() -> None:
        fifo.parent.mkdir(parents=True, exist_ok=True)
        if not fifo.exists():
            os.mkfifo(fifo, 0o600)
        rc.write_text(_RC)

    return ("sh", "-c", 'exec "$@" <>"$0"', str(fifo), *argv), env, prepare
