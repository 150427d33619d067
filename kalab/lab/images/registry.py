"""What a container image runs in the lab: the kubelet's "image store" and "container runtime" in one lookup.

A real node pulls an image and runs its entrypoint inside a container. The lab has no images: it knows a few of the
seed's images and, for each, which program of ours plays the container, driven by the container spec exactly as the
seed writes it (command, args, env, volume mounts). Everything else is refused with a clear reason and never runs:

- `registry.redhat.io/openshift4/ose-keepalived-ipfailover` with `bash -c "exec /usr/sbin/keepalived …"` → the real
  keepalived, its `--use-file`, `--pid` and $TMPDIR mapped to the pod's volume directories;
- `quay.io/redhat-cop/keepalived-operator` → by command: `notify.sh` (config-setup when `create_config_only=true`,
  else config-reloader), `/usr/local/bin/keepalived_exporter` (the exporter, args passed through) or `/manager`
  (a stand-in; the operator's reconciliation runs in the lab's control plane);
- `quay.io/wangzheng422/php:demo.02` → the php demo page on port 80 with the pod's IP;
- `registry.redhat.io/rhel8/support-tools` (and the other node-debug images `oc debug node` and `kubectl debug
  node` are given) → the container's command run on its node, in the node's network namespace: the node-debug
  pod mounts the node's `/` at /host, and `chroot /host CMD` means CMD on the node (see node_debug.py).

Pods share the host's file system, so every path a container names must lie on one of its volume mounts; volumes
are directories under the pod's own directory (emptyDir, configMap, secret) or, for hostPath, /lib/modules only
(volumes.py). The container's env and command line are built as Kubernetes builds them (containerenv.py); what
the kubelet gets back is outcomes.py's.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from kalab.lab.dataplane.sandbox import Sandbox
from kalab.lab.images import keepalived, node_debug, operator_image
from kalab.lab.images.containerenv import BASE_PATH, command_words, container_env, expand_k8s
from kalab.lab.images.outcomes import BadContainer, ContainerConfigError, Lookup, Program, Refusal, UnknownImage
from kalab.lab.images.volumes import PodVolumes
from kalab.model import objects

KEEPALIVED_IMAGE: Final = keepalived.IMAGE
OPERATOR_IMAGE: Final = operator_image.IMAGE
PHP_DEMO_IMAGE: Final = "quay.io/wangzheng422/php"
PHP_DEMO_TAG: Final = "demo.02"
KNOWN_IMAGES: Final = (KEEPALIVED_IMAGE, OPERATOR_IMAGE, f"{PHP_DEMO_IMAGE}:{PHP_DEMO_TAG}", *node_debug.IMAGES)

# keepalived flags the operator's pod may pass: the ones the lab sets itself, and harmless switches.
_KEEPALIVED_SWITCHES: Final = frozenset(
    {"--log-console", "-l", "--log-detail", "-D", "--dont-fork", "-n", "--no-syslog", "-S", "--vrrp", "-P",
     "--dump-conf", "-d", "--address-monitoring", "-a", "--release-vips", "-X", "--check", "-C"}
)  # fmt: skip
_KEEPALIVED_VALUES: Final = {
    "--config-id": "config_id",
    "-i": "config_id",
    "--use-file": "use_file",
    "-f": "use_file",
    "--pid": "pid",
    "-p": "pid",
}


# ---------------------------------------------------------------------------------------------------------------
# Images


def split_image(image: str) -> tuple[str, str | None, str | None]:
    """`repo[:tag][@digest]` → (repo, tag, digest); the tag is the part after the last `:` of the last segment."""
    name, _, digest = image.partition("@")
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        repo, tag = name.rsplit(":", 1)
        return repo, tag, digest or None
    return name, None, digest or None


def known_image(image: str) -> str | None:
    """Which known image `image` is (its repository, or `repo:tag` for the php demo); None if unknown."""
    repo, tag, _ = split_image(image)
    if repo in (KEEPALIVED_IMAGE, OPERATOR_IMAGE):
        return repo
    if repo == PHP_DEMO_IMAGE and tag == PHP_DEMO_TAG:
        return f"{repo}:{tag}"
    if repo in node_debug.IMAGES:
        return repo
    return None


def unknown_image_message(image: str) -> str:
    return f'kalab lab runs only images it knows ({", ".join(KNOWN_IMAGES)}); "{image}" is not one of them'


def image_display(image: str) -> str:
    """The image as a container status shows it: an untagged reference gets `:latest`, as the runtime reports."""
    _, tag, digest = split_image(image)
    return image if tag or digest else f"{image}:latest"


def image_id(image: str) -> str:
    """A stable `repo@sha256:…` for a known image (the lab pulls nothing, so the digest is derived from the name)."""
    repo, tag, digest = split_image(image)
    if digest:
        return f"{repo}@{digest}"
    digest = hashlib.sha256(f"kalab:{repo}:{tag or 'latest'}".encode()).hexdigest()
    return f"{repo}@sha256:{digest}"


# ---------------------------------------------------------------------------------------------------------------
# The programs


def _python(module: str, *args: str) -> tuple[str, ...]:
    return (sys.executable, "-m", module, *args)


def _on_volume(volumes: PodVolumes, container: Mapping[str, Any], path: str, what: str) -> Path:
    host = volumes.resolve(container, path)
    if host is None:
        raise ContainerConfigError(
            f'{what} "{path}" is on none of container "{container.get("name")}"\'s volume mounts; '
            "in the lab a container sees only its volumes"
        )
    return host


@dataclass(frozen=True)
class _KeepalivedFlags:
    config_id: str | None
    use_file: str | None
    pid: str | None
    switches: tuple[str, ...]


def _keepalived_flags(words: Sequence[str]) -> _KeepalivedFlags:
    if not words or os.path.basename(words[0]) != "keepalived":
        raise ContainerConfigError(
            f"the {KEEPALIVED_IMAGE} image runs keepalived in the lab (`exec /usr/sbin/keepalived …`), "
            f"not {' '.join(words) or 'its default entrypoint'!r}"
        )
    values: dict[str, str] = {}
    switches: list[str] = []
    rest = list(words[1:])
    while rest:
        word = rest.pop(0)
        flag, eq, value = word.partition("=")
        if flag in _KEEPALIVED_VALUES:
            if not eq:
                if not rest:
                    raise ContainerConfigError(f"keepalived flag {flag} needs a value")
                value = rest.pop(0)
            values[_KEEPALIVED_VALUES[flag]] = value
        elif word in _KEEPALIVED_SWITCHES:
            switches.append(word)
        else:
            raise ContainerConfigError(
                f"kalab lab runs keepalived with the operator's flags only; {word!r} is not one of them"
            )
    return _KeepalivedFlags(values.get("config_id"), values.get("use_file"), values.get("pid"), tuple(switches))


def _keepalived(
    pod: Mapping[str, Any], container: Mapping[str, Any], volumes: PodVolumes, env: dict[str, str], words: list[str]
) -> Program:
    flags = _keepalived_flags(words)
    if not flags.use_file:
        raise ContainerConfigError("keepalived needs --use-file=<config> on a volume (the config-setup output)")
    config = _on_volume(volumes, container, flags.use_file, "keepalived's config")
    pid = (
        _on_volume(volumes, container, flags.pid, "keepalived's pid file")
        if flags.pid
        else volumes.scratch(str(container.get("name"))) / "run" / keepalived.MAIN_PID_FILE
    )
    tmp = volumes.resolve(container, "/tmp") or volumes.scratch(str(container.get("name")))
    # Without --config-id keepalived uses the host name, which in a pod is the pod's name.
    config_id = flags.config_id or objects.name_of(pod)
    argv, keepalived_env = keepalived.keepalived_command(config_id, config, pid.parent, tmp)
    argv = [f"--pid={pid}" if a.startswith("--pid=") else a for a in argv]
    argv += [s for s in flags.switches if s not in argv and s not in ("-l", "-D", "-n", "-S")]

    def prepare() -> None:
        pid.parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir(parents=True, exist_ok=True)
        keepalived.clear_stale_pid_files(pid.parent)

    return Program("keepalived", tuple(argv), {**env, **keepalived_env}, prepare)


def _keepalived_pid_of_pod(pod: Mapping[str, Any], volumes: PodVolumes) -> Path | None:
    """The pod's keepalived pid file on the host (for a process-namespace-sharing pod's exporter)."""
    for other in objects.spec(pod).get("containers") or []:
        if known_image(str(other.get("image") or "")) != KEEPALIVED_IMAGE:
            continue
        try:
            flags = _keepalived_flags(command_words(other, {}))
        except ContainerConfigError:
            continue
        if flags.pid:
            return volumes.resolve(other, flags.pid)
    return None


def _operator(
    pod: Mapping[str, Any], container: Mapping[str, Any], volumes: PodVolumes, env: dict[str, str], words: list[str]
) -> Program:
    program = os.path.basename(words[0]) if words else "manager"  # the image's entrypoint is /manager
    module = "kalab.lab.images.operator_image"
    if program == "notify.sh":
        for needed in ("file", "dst_file"):
            if not env.get(needed):
                raise ContainerConfigError(f"notify.sh needs the env variable {needed} (the config's path)")
        args = [
            "--src",
            str(_on_volume(volumes, container, env["file"], "file")),
            "--dst",
            str(_on_volume(volumes, container, env["dst_file"], "dst_file")),
        ]
        if env.get("reachip"):
            args += ["--reach-ip", env["reachip"]]
        if env.get("create_config_only", "").lower() == "true":
            return Program("config-setup", _python(module, "config-setup", *args), env)
        if env.get("pid"):
            args += ["--pid-file", str(_on_volume(volumes, container, env["pid"], "pid"))]
        return Program("config-reloader", _python(module, "config-reloader", *args), env)
    if program == "keepalived_exporter":
        tmp = volumes.resolve(container, "/tmp") or volumes.scratch(str(container.get("name")))
        ours = ["--tmp-dir", str(tmp)]
        # With a shared process namespace the Go exporter sees the pod's keepalived; the pid file names it here.
        pid = _keepalived_pid_of_pod(pod, volumes) if objects.spec(pod).get("shareProcessNamespace") else None
        if pid is not None:
            ours += ["--pid-file", str(pid)]
        # The pod's own flags (-web.listen-address, -web.telemetry-path) first; ours last, so they win.
        return Program("exporter", _python(module, "exporter", *words[1:], *ours), {**env, "TMPDIR": str(tmp)})
    if program == "manager":
        return Program("operator-manager", _python("kalab.lab.images.operator_manager", *words[1:]), env)
    raise ContainerConfigError(
        f"the {OPERATOR_IMAGE} image runs notify.sh, /usr/local/bin/keepalived_exporter or /manager in the lab, "
        f"not {' '.join(words)!r}"
    )


def _php_demo(sandbox: Sandbox | None, env: dict[str, str], words: list[str]) -> Program:
    if words:
        raise ContainerConfigError(
            f"the {PHP_DEMO_IMAGE}:{PHP_DEMO_TAG} image runs its own web server in the lab; "
            f"a command ({' '.join(words)!r}) is not supported"
        )
    args = ["--port", "80"]
    if sandbox is not None:
        args += ["--ip", sandbox.ip]
    return Program("php-demo", _python("kalab.lab.images.php_demo", *args), env)


def program_for(
    pod: Mapping[str, Any],
    container: Mapping[str, Any],
    volumes: PodVolumes,
    sandbox: Sandbox | None,
    lookup: Lookup | None = None,
) -> Program | Refusal:
    """What `container` of `pod` runs in the lab, or why it does not (UnknownImage / BadContainer)."""
    image = str(container.get("image") or "")
    known = known_image(image)
    if known is None:
        return UnknownImage("ErrImagePull", unknown_image_message(image))
    try:
        env = {"PATH": BASE_PATH, "HOSTNAME": objects.name_of(pod)}
        env.update(container_env(pod, container, sandbox, lookup))
        if known in node_debug.IMAGES:  # any command, shell scripts included: it runs on the node as written
            raw = [expand_k8s(str(p), env) for p in [*(container.get("command") or []), *(container.get("args") or [])]]
            argv, extra, prepare = node_debug.program(pod, container, raw, volumes.root)
            return Program("node-debug", argv, {**env, **extra}, prepare)
        words = command_words(container, env)
        if known == KEEPALIVED_IMAGE:
            return _keepalived(pod, container, volumes, env, words)
        if known == OPERATOR_IMAGE:
            return _operator(pod, container, volumes, env, words)

        return _php_demo(sandbox, env, words)
    except ContainerConfigError as err:
        return BadContainer("CreateContainerConfigError", str(err))
