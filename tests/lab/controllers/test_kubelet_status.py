"""The kubelet's pod status, from golden fixtures: what the kubelet knows of a pod and its processes in, the
status it writes out (tests/fixtures/kubelet_status/*.json). Pure: no root, no lab."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from kalab.lab.controllers.kubelet import status
from kalab.lab.controllers.kubelet.state import Container, PodRuntime
from kalab.lab.dataplane.processes import ProcessStatus, Termination
from kalab.lab.dataplane.sandbox import Sandbox
from kalab.lab.images.outcomes import BadContainer, Program, UnknownImage
from kalab.lab.images.volumes import PodVolumes

FIXTURES = Path(__file__).parents[2] / "fixtures" / "kubelet_status"
CASES = sorted(FIXTURES.glob("*.json"))


def _when(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def _termination(raw: dict[str, Any] | None) -> Termination | None:
    if raw is None:
        return None
    return Termination(
        raw["exit_code"],
        raw.get("signal"),
        raw["reason"],
        _when(raw["started_at"]),  # type: ignore[arg-type]
        _when(raw["finished_at"]),
    )  # type: ignore[arg-type]


def _process(name: str, raw: dict[str, Any] | None) -> ProcessStatus | None:
    if raw is None:
        return None
    return ProcessStatus(
        name=name,
        state=raw["state"],
        pid=raw.get("pid"),
        restarts=raw.get("restarts", 0),
        started_at=_when(raw.get("started_at")),
        finished_at=_when(raw.get("finished_at")),
        exit_code=raw.get("exit_code"),
        signal=raw.get("signal"),
        reason=raw.get("reason"),
        log_path=Path("/nonexistent"),
        last_termination=_termination(raw.get("last_termination")),
    )


def _container(raw: dict[str, Any], root: Path) -> Container:
    refusal = raw.get("refusal")
    program: Any = None
    if refusal is not None:
        kind = {"UnknownImage": UnknownImage, "BadContainer": BadContainer}[refusal["kind"]]
        program = kind(refusal["reason"], refusal["message"])
    elif raw.get("started"):
        program = Program("test", ("true",), {})
    spec = {"name": raw["name"], "image": raw["image"]}
    return Container(
        spec,
        raw.get("init", False),
        f"ns/pod/{raw['name']}",
        root / f"{raw['name']}.log",
        program=program,
        started=raw.get("started", False),
        start_error=raw.get("start_error"),
        refused_since=raw.get("refused_since"),
    )


def runtime_of(raw: dict[str, Any]) -> PodRuntime:
    """The fixture's `runtime`: the pod as the kubelet remembers it."""
    root = Path("/nonexistent/pod")
    key = f"{raw['namespace']}/{raw['name']}"
    ip = raw.get("sandbox_ip")
    return PodRuntime(
        key=key,
        namespace=raw["namespace"],
        name=raw["name"],
        uid=raw["uid"],
        node=raw["node"],
        host_network=raw.get("host_network", False),
        root=root,
        grace=30.0,
        restart_policy=raw.get("restart_policy", "Always"),
        start_time=raw["start_time"],
        ref={},
        containers=[_container(c, root) for c in raw["containers"]],
        sources=set(),
        sandbox=Sandbox(key, raw["node"], "netns", ip, "eth0") if ip else None,
        volumes=PodVolumes(root) if raw.get("volumes", True) else None,
        setup_error=raw.get("setup_error"),
        init_done=raw.get("init_done", 0),
        init_failed=raw.get("init_failed", False),
        transitions={k: (v[0], v[1]) for k, v in raw.get("transitions", {}).items()},
    )


def computed(case: dict[str, Any]) -> dict[str, Any]:
    runtime = runtime_of(case["runtime"])
    processes = {c.name: _process(c.name, case["processes"].get(c.name)) for c in runtime.containers}
    found = status.pod_status(
        runtime, processes, case["old_status"], case["spec"], case["host_ip"], case["now"], case["clock"]
    )
    transitions = {k: list(v) for k, v in found.transitions.items()}
    return {"phase": found.phase, "status": found.status, "transitions": transitions}


def test_there_are_fixtures() -> None:
    assert len(CASES) >= 5


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_pod_status_matches_its_golden_fixture(path: Path) -> None:
    case = json.loads(path.read_text())
    assert computed(case) == case["expected"], case["description"]


def test_qos_classes() -> None:
    assert status.qos_class({"containers": [{}]}) == "BestEffort"
    both = {"cpu": "1", "memory": "1Gi"}
    assert status.qos_class({"containers": [{"resources": {"limits": both, "requests": both}}]}) == "Guaranteed"
    assert status.qos_class({"containers": [{"resources": {"limits": both}}]}) == "Guaranteed"  # requests default
    assert status.qos_class({"containers": [{"resources": {"requests": {"cpu": "1"}}}]}) == "Burstable"
