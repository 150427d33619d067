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
are directories under the pod's own directory (emptyDir, configMap, secret) or, for hostPath, /lib/modules only.
ConfigMap and Secret volumes are written like the real kubelet's atomic writer (files behind a `..data` symlink that
is swapped in one rename), so a reader never sees half an update — the config-reloader relies on that.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shlex
import shutil
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Final

from kalab.lab.dataplane.sandbox import Sandbox
from kalab.lab.images import keepalived, node_debug, operator_image
from kalab.model import objects

KEEPALIVED_IMAGE: Final = keepalived.IMAGE
OPERATOR_IMAGE: Final = operator_image.IMAGE
PHP_DEMO_IMAGE: Final = "quay.io/wangzheng422/php"
PHP_DEMO_TAG: Final = "demo.02"
KNOWN_IMAGES: Final = (KEEPALIVED_IMAGE, OPERATOR_IMAGE, f"{PHP_DEMO_IMAGE}:{PHP_DEMO_TAG}", *node_debug.IMAGES)
# The only host directory a pod may mount: keepalived's pod mounts it read-only to load kernel modules (ip_vs).
ALLOWED_HOST_PATHS: Final = ("/lib/modules",)
DEFAULT_FILE_MODE: Final = 0o644  # a configMap/secret volume's defaultMode when the spec gives none (420)
BASE_PATH: Final = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

_SHELLS: Final = frozenset({"bash", "sh", "/bin/bash", "/bin/sh", "/usr/bin/bash", "/usr/bin/sh"})
# A `bash -c` script is run only when it is one simple command: no pipes, lists, redirections or substitutions.
_SHELL_SYNTAX: Final = re.compile(r"[;&|`<>(){}\n]|\$\(")
_BRACED_VAR: Final = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}")
_SHELL_VAR: Final = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)")
_K8S_VAR: Final = re.compile(r"\$\$|\$\(([-._a-zA-Z][-._a-zA-Z0-9]*)\)")
_FIELD_LABEL: Final = re.compile(r"^metadata\.(labels|annotations)\['([^']+)'\]$")

# keepalived flags the operator's pod may pass: the ones the lab sets itself, and harmless switches.
_KEEPALIVED_SWITCHES: Final = frozenset(
    {"--log-console", "-l", "--log-detail", "-D", "--dont-fork", "-n", "--no-syslog", "-S", "--vrrp", "-P",
     "--dump-conf", "-d", "--address-monitoring", "-a", "--release-vips", "-X", "--check", "-C"}
)  # fmt: skip
_KEEPALIVED_VALUES: Final = {"--config-id": "config_id", "-i": "config_id", "--use-file": "use_file", "-f": "use_file",
                             "--pid": "pid", "-p": "pid"}  # fmt: skip

# Looks up a ConfigMap or Secret: (kind, namespace, name) → the object, or None when it does not exist.
Lookup = Callable[[str, str, str], Mapping[str, Any] | None]


# ---------------------------------------------------------------------------------------------------------------
# What the kubelet gets back


@dataclass(frozen=True)
class Program:
    """A known image's program for one container: run `argv` with `env` inside the pod's network namespace."""

    role: str  # keepalived, config-setup, config-reloader, exporter, operator-manager, php-demo
    argv: tuple[str, ...]
    env: Mapping[str, str]
    # Run before every start, restarts included (keepalived: drop pid files a dead instance left behind).
    prepare: Callable[[], None] | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Refusal:
    """A container the lab will not run; `reason` and `message` go into its waiting state."""

    reason: str
    message: str


class UnknownImage(Refusal):
    """An image the lab does not know: the pod fails with ErrImagePull and nothing is executed."""


class BadContainer(Refusal):
    """A known image asked to do something the lab cannot map (unknown command, a path on no volume, …)."""


class ContainerConfigError(Exception):
    """A container's env or volume source is missing (CreateContainerConfigError / FailedMount)."""


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
# Volumes


def _volume_kind(volume: Mapping[str, Any]) -> str:
    for kind in ("emptyDir", "configMap", "secret", "hostPath"):
        if kind in volume:
            return kind
    other = next((k for k in volume if k != "name"), "unknown")
    return str(other)


# Directory names as the real kubelet lays them out (/var/lib/kubelet/pods/<uid>/volumes/kubernetes.io~empty-dir/…).
_PLUGIN_DIRS: Final = {"emptyDir": "kubernetes.io~empty-dir", "configMap": "kubernetes.io~configmap",
                       "secret": "kubernetes.io~secret"}  # fmt: skip


@dataclass
class PodVolumes:
    """A pod's volumes on this machine: volume name → host directory, under the pod's own directory `root`."""

    root: Path
    dirs: dict[str, Path] = field(default_factory=dict)
    read_only: set[str] = field(default_factory=set)  # hostPath volumes
    # What each configMap/secret volume holds now (relative path → bytes), to write only real changes.
    projected: dict[str, dict[str, bytes]] = field(default_factory=dict)

    def resolve(self, container: Mapping[str, Any], path: str) -> Path | None:
        """The host path behind the container path `path` (longest volume mount wins); None when on no volume."""
        if not path.startswith("/"):
            return None
        best: tuple[str, Mapping[str, Any]] | None = None
        for mount in container.get("volumeMounts") or []:
            mount_path = str(mount.get("mountPath") or "").rstrip("/") or "/"
            inside = path == mount_path or path.startswith(mount_path.rstrip("/") + "/")
            if inside and (best is None or len(mount_path) > len(best[0])):
                best = (mount_path, mount)
        if best is None:
            return None
        mount_path, mount = best
        base = self.dirs.get(str(mount.get("name")))
        if base is None:
            return None
        rest = PurePosixPath(path[len(mount_path) :].lstrip("/"))
        sub = PurePosixPath(str(mount.get("subPath") or ""))
        if ".." in rest.parts or ".." in sub.parts or sub.is_absolute():
            return None
        return base / sub / rest if str(sub) != "." else base / rest

    def scratch(self, container: str) -> Path:
        """A private directory for one container (its /tmp when no volume is mounted there)."""
        path = self.root / "scratch" / container
        path.mkdir(parents=True, exist_ok=True)
        return path


def prepare_volumes(pod: Mapping[str, Any], root: Path, lookup: Lookup) -> PodVolumes:
    """Create the pod's volume directories under `root` and fill configMap/secret volumes.

    Raises ContainerConfigError with the kubelet's FailedMount wording when a source is missing or refused.
    """
    volumes = PodVolumes(root)
    for volume in objects.spec(pod).get("volumes") or []:
        name = str(volume.get("name") or "")
        if not name or "/" in name or name in (".", ".."):
            raise ContainerConfigError(f'volume name "{name}" is not valid')
        kind = _volume_kind(volume)
        if kind == "hostPath":
            path = os.path.normpath(str((volume.get("hostPath") or {}).get("path") or ""))
            if path == node_debug.NODE_ROOT:
                # A node-debug pod's /host: the node itself, which only the node-debug image uses (it runs its
                # command on the node); no path of any container resolves onto it.
                volumes.read_only.add(name)
                continue
            if path not in ALLOWED_HOST_PATHS:
                raise ContainerConfigError(
                    f'MountVolume.SetUp failed for volume "{name}" : kalab lab mounts only host paths '
                    f'{", ".join(ALLOWED_HOST_PATHS)} (read-only); "{path}" is refused'
                )
            volumes.dirs[name] = Path(path)
            volumes.read_only.add(name)
            continue
        if kind not in _PLUGIN_DIRS:
            raise ContainerConfigError(
                f'MountVolume.SetUp failed for volume "{name}" : kalab lab supports emptyDir, configMap, secret '
                f"and hostPath volumes, not {kind}"
            )
        directory = root / "volumes" / _PLUGIN_DIRS[kind] / name
        directory.mkdir(parents=True, exist_ok=True)
        volumes.dirs[name] = directory
    sync_projected(pod, volumes, lookup)
    return volumes


def projected_files(volume: Mapping[str, Any], source: Mapping[str, Any] | None) -> dict[str, bytes] | None:
    """The files a configMap/secret volume shows for `source` (None: source missing and optional → empty)."""
    kind = "configMap" if "configMap" in volume else "secret"
    ref = volume.get(kind) or {}
    name = str(ref.get("name") or ref.get("secretName") or "")
    what = "configmap" if kind == "configMap" else "secret"
    if source is None:
        if ref.get("optional"):
            return {}
        raise ContainerConfigError(
            f'MountVolume.SetUp failed for volume "{volume.get("name")}" : {what} "{name}" not found'
        )
    data: dict[str, bytes] = {}
    if kind == "configMap":
        data.update({k: str(v).encode() for k, v in (source.get("data") or {}).items()})
        data.update({k: base64.b64decode(str(v)) for k, v in (source.get("binaryData") or {}).items()})
    else:
        data.update({k: base64.b64decode(str(v)) for k, v in (source.get("data") or {}).items()})
        data.update({k: str(v).encode() for k, v in (source.get("stringData") or {}).items()})
    items = ref.get("items")
    if not items:
        return {key: value for key, value in data.items() if _safe_relative(key)}
    files: dict[str, bytes] = {}
    for item in items:
        key, path = str(item.get("key") or ""), str(item.get("path") or "")
        if key not in data:
            if ref.get("optional"):
                continue
            raise ContainerConfigError(
                f'MountVolume.SetUp failed for volume "{volume.get("name")}" : '
                f"configmap references non-existent config key: {key}"
            )
        if not _safe_relative(path):
            raise ContainerConfigError(f'volume "{volume.get("name")}": item path "{path}" must be relative')
        files[path] = data[key]
    return files


def _safe_relative(path: str) -> bool:
    parts = PurePosixPath(path).parts
    return bool(parts) and not path.startswith("/") and ".." not in parts and not parts[0].startswith("..")


def sync_projected(pod: Mapping[str, Any], volumes: PodVolumes, lookup: Lookup) -> list[str]:
    """Bring every configMap/secret volume up to date with its source; the names of those that changed.

    This is the real kubelet's periodic volume sync: how a new keepalived.conf reaches a running pod.
    """
    meta = objects.meta(pod)
    namespace = str(meta.get("namespace") or "default")
    changed = []
    for volume in objects.spec(pod).get("volumes") or []:
        name = str(volume.get("name") or "")
        if "configMap" in volume:
            source = lookup("ConfigMap", namespace, str((volume["configMap"] or {}).get("name") or ""))
        elif "secret" in volume:
            source = lookup("Secret", namespace, str((volume["secret"] or {}).get("secretName") or ""))
        else:
            continue
        files = projected_files(volume, source)
        assert files is not None
        if volumes.projected.get(name) == files:
            continue
        ref = volume.get("configMap") or volume.get("secret") or {}
        write_atomic_dir(volumes.dirs[name], files, int(ref.get("defaultMode") or DEFAULT_FILE_MODE))
        volumes.projected[name] = files
        changed.append(name)
    return changed


def write_atomic_dir(target: Path, files: Mapping[str, bytes], mode: int = DEFAULT_FILE_MODE) -> None:
    """Replace the contents of `target` in one step, as the kubelet's atomic writer does for configMap volumes.

    The files go into a fresh hidden directory `..<timestamp>`; the symlink `..data` is pointed at it with one
    rename; each top-level name is a symlink through `..data`. A reader sees the old set or the new one, never a mix.
    """
    target.mkdir(parents=True, exist_ok=True)
    stamp = f"..{time.strftime('%Y_%m_%d_%H_%M_%S', time.gmtime())}.{time.time_ns() % 10**9:09d}"
    fresh = target / stamp
    fresh.mkdir()
    for relative, content in files.items():
        path = fresh / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        path.chmod(mode & 0o777)
    data_link = target / "..data"
    old = os.readlink(data_link) if data_link.is_symlink() else None
    tmp_link = target / "..data_tmp"
    tmp_link.unlink(missing_ok=True)
    tmp_link.symlink_to(stamp)
    os.replace(tmp_link, data_link)
    tops = {PurePosixPath(relative).parts[0] for relative in files}
    for top in tops:
        link = target / top
        if not link.is_symlink():
            if link.exists():
                shutil.rmtree(link) if link.is_dir() else link.unlink()
            link.symlink_to(f"..data/{top}")
    for entry in target.iterdir():
        if not entry.name.startswith("..") and entry.is_symlink() and entry.name not in tops:
            entry.unlink()  # a key that left the ConfigMap disappears from the volume too
    if old and old != stamp:
        shutil.rmtree(target / old, ignore_errors=True)


# ---------------------------------------------------------------------------------------------------------------
# Environment and command line


def expand_k8s(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' `$(VAR)` expansion in env values, command and args: defined names are replaced, `$$` is `$`,
    anything else stays as written."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env[name] if name in env else match.group(0)

    return _K8S_VAR.sub(replace, text)


def _field_ref(pod: Mapping[str, Any], sandbox: Sandbox | None, path: str) -> str:
    meta, spec, status = objects.meta(pod), objects.spec(pod), objects.status(pod)
    simple = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName") or "default",
        "status.hostIP": sandbox.ip if sandbox and sandbox.host_network else status.get("hostIP"),
        "status.podIP": sandbox.ip if sandbox else status.get("podIP"),
        "status.podIPs": sandbox.ip if sandbox else status.get("podIP"),
    }
    if path in simple:
        return str(simple[path] or "")
    if match := _FIELD_LABEL.match(path):
        return str((meta.get(match.group(1)) or {}).get(match.group(2)) or "")
    raise ContainerConfigError(f"unsupported fieldRef {path!r}")


def _key_ref(kind: str, namespace: str, ref: Mapping[str, Any], lookup: Lookup | None) -> str | None:
    name, key = str(ref.get("name") or ""), str(ref.get("key") or "")
    source = lookup(kind, namespace, name) if lookup else None
    what = "configmap" if kind == "ConfigMap" else "secret"
    if source is None:
        if ref.get("optional"):
            return None
        raise ContainerConfigError(f'{what} "{name}" not found')
    if kind == "ConfigMap":
        value = (source.get("data") or {}).get(key)
        found = None if value is None else str(value)
    else:
        raw = (source.get("data") or {}).get(key)
        found = None if raw is None else base64.b64decode(str(raw)).decode(errors="replace")
    if found is None and not ref.get("optional"):
        raise ContainerConfigError(f"couldn't find key {key} in {what} {namespace}/{name}")
    return found


def container_env(
    pod: Mapping[str, Any], container: Mapping[str, Any], sandbox: Sandbox | None, lookup: Lookup | None = None
) -> dict[str, str]:
    """The container's environment as the kubelet builds it: envFrom, then env (with `$(VAR)` and the downward API)."""
    namespace = objects.namespace_of(pod, "default")
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        prefix = str(source.get("prefix") or "")
        for kind, key in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
            if key not in source:
                continue
            ref = source[key] or {}
            found = lookup(kind, namespace, str(ref.get("name") or "")) if lookup else None
            if found is None:
                if ref.get("optional"):
                    continue
                raise ContainerConfigError(f'{kind.lower()} "{ref.get("name")}" not found')
            for name, value in (found.get("data") or {}).items():
                text = base64.b64decode(str(value)).decode(errors="replace") if kind == "Secret" else str(value)
                env[prefix + name] = text
    for item in container.get("env") or []:
        name = str(item.get("name") or "")
        if not name:
            continue
        source = item.get("valueFrom")
        if not source:
            env[name] = expand_k8s(str(item.get("value") or ""), env)
        elif "fieldRef" in source:
            env[name] = _field_ref(pod, sandbox, str((source["fieldRef"] or {}).get("fieldPath") or ""))
        elif "configMapKeyRef" in source or "secretKeyRef" in source:
            kind = "ConfigMap" if "configMapKeyRef" in source else "Secret"
            value = _key_ref(kind, namespace, source.get("configMapKeyRef") or source.get("secretKeyRef"), lookup)
            if value is not None:
                env[name] = value
        else:
            env[name] = ""  # resourceFieldRef: the lab sets no resource limits
    return env


def _shell_expand(word: str, env: Mapping[str, str]) -> str:
    return _SHELL_VAR.sub(lambda m: env.get(m.group(1) or m.group(2), ""), word)


def command_words(container: Mapping[str, Any], env: Mapping[str, str]) -> list[str]:
    """What the container execs: command + args after `$(VAR)` expansion; a `bash -c "exec prog …"` script becomes
    prog's own argv (with `${VAR}` expanded as the shell would). Raises ContainerConfigError for real shell code."""
    words = [expand_k8s(str(p), env) for p in [*(container.get("command") or []), *(container.get("args") or [])]]
    if len(words) >= 3 and words[0] in _SHELLS and words[1] == "-c":
        script = words[2]
        if _SHELL_SYNTAX.search(_BRACED_VAR.sub("", script.strip())):
            raise ContainerConfigError(
                "kalab lab runs `sh -c` scripts only when they are one command (`exec program args`), "
                f"not {' '.join(script.split())!r}"
            )
        try:
            parsed = shlex.split(script)
        except ValueError as err:
            raise ContainerConfigError(f"cannot parse the script {script!r}: {err}") from None
        if parsed[:1] == ["exec"]:
            parsed = parsed[1:]
        return [_shell_expand(word, env) for word in parsed]
    return words


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
        args = ["--src", str(_on_volume(volumes, container, env["file"], "file")),
                "--dst", str(_on_volume(volumes, container, env["dst_file"], "dst_file"))]  # fmt: skip
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
