"""A pod's volumes on this machine: directories under the pod's own directory, laid out as the real kubelet lays
them out; configMap and secret volumes written like its atomic writer (files behind a `..data` symlink swapped in
one rename), so a reader never sees half an update — the config-reloader relies on that."""

import base64
import os
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Final

from kalab.lab.images import node_debug
from kalab.lab.images.outcomes import ContainerConfigError, Lookup
from kalab.model import objects

# The only host directory a pod may mount: keepalived's pod mounts it read-only to load kernel modules (ip_vs).
ALLOWED_HOST_PATHS: Final = ("/lib/modules",)
DEFAULT_FILE_MODE: Final = 0o644  # a configMap/secret volume's defaultMode when the spec gives none (420)


def _volume_kind(volume: Mapping[str, Any]) -> str:
    for kind in ("emptyDir", "configMap", "secret", "hostPath"):
        if kind in volume:
            return kind
    other = next((k for k in volume if k != "name"), "unknown")
    return str(other)


# Directory names as the real kubelet lays them out (/var/lib/kubelet/pods/<uid>/volumes/kubernetes.io~empty-dir/…).
_PLUGIN_DIRS: Final = {
    "emptyDir": "kubernetes.io~empty-dir",
    "configMap": "kubernetes.io~configmap",
    "secret": "kubernetes.io~secret",
}


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
