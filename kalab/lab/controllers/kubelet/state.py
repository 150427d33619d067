"""What the kubelet remembers about each pod it runs: its containers, sandbox, volumes and how far it got."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kalab.lab.apiserver.store import Obj
from kalab.lab.dataplane.restart_policy import RestartPolicy
from kalab.lab.dataplane.sandbox import Sandbox
from kalab.lab.images.outcomes import Program, Refusal
from kalab.lab.images.volumes import PodVolumes


@dataclass
class Container:
    spec: dict[str, Any]
    init: bool
    process: str  # the supervisor's name: <ns>/<pod>/<container>
    log_path: Path
    program: Program | Refusal | None = None
    started: bool = False
    start_error: str | None = None
    refused_since: float | None = None
    reported: str | None = None  # the last waiting reason an event was recorded for

    @property
    def name(self) -> str:
        return str(self.spec.get("name"))

    @property
    def image(self) -> str:
        return str(self.spec.get("image") or "")


@dataclass
class PodRuntime:
    key: str
    namespace: str
    name: str
    uid: str
    node: str
    host_network: bool
    root: Path
    grace: float
    restart_policy: RestartPolicy
    start_time: str
    ref: Obj  # enough of the pod to record events after it is gone
    containers: list[Container]
    sources: set[tuple[str, str]]  # (kind, name) of the ConfigMaps and Secrets it uses
    sandbox: Sandbox | None = None
    volumes: PodVolumes | None = None
    setup_error: str | None = None
    init_done: int = 0
    init_failed: bool = False
    # condition type → (status, lastTransitionTime): a condition keeps its time while its status stays
    transitions: dict[str, tuple[str, str]] = field(default_factory=dict)
    events: set[tuple[str, str]] = field(default_factory=set)

    @property
    def inits(self) -> list[Container]:
        return [c for c in self.containers if c.init]

    @property
    def mains(self) -> list[Container]:
        return [c for c in self.containers if not c.init]

    def container(self, name: str) -> Container | None:
        return next((c for c in self.containers if c.name == name), None)


def sources(spec: Mapping[str, Any]) -> set[tuple[str, str]]:
    """(kind, name) of every ConfigMap and Secret the pod reads, through volumes or env."""
    found: set[tuple[str, str]] = set()
    for volume in spec.get("volumes") or []:
        if "configMap" in volume:
            found.add(("ConfigMap", str((volume["configMap"] or {}).get("name"))))
        if "secret" in volume:
            found.add(("Secret", str((volume["secret"] or {}).get("secretName"))))
    for container in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
        for item in container.get("env") or []:
            source = item.get("valueFrom") or {}
            if "configMapKeyRef" in source:
                found.add(("ConfigMap", str(source["configMapKeyRef"].get("name"))))
            if "secretKeyRef" in source:
                found.add(("Secret", str(source["secretKeyRef"].get("name"))))
        for item in container.get("envFrom") or []:
            if "configMapRef" in item:
                found.add(("ConfigMap", str(item["configMapRef"].get("name"))))
            if "secretRef" in item:
                found.add(("Secret", str(item["secretRef"].get("name"))))
    return found
