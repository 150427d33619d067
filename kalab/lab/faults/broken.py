"""What is broken in a lab: `break_fault`, `heal` and `mystery`, remembered in the lab's state dir (faults.json)."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kalab.cluster.diagnose.catalog import CATALOG, FAULTS
from kalab.lab import control
from kalab.lab.faults.recipes import NOT_YET, RECIPES
from kalab.lab.faults.site import FaultSite
from kalab.model.errors import KalabError

STATE_FILE = "faults.json"


@dataclass(frozen=True)
class Listed:
    """One catalog id as `kalab lab faults` lists it."""

    id: str
    reproducible: bool
    why: str

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "reproducible": self.reproducible, "why": self.why}


def faults() -> list[Listed]:
    """Every catalog id: whether the lab can break it for real, and how (or why not yet)."""
    return [Listed(f.id, True, f.cause) if f.id in RECIPES else Listed(f.id, False, NOT_YET[f.id]) for f in CATALOG]


def _path(info: control.LabInfo) -> Path:
    return info.state_dir / STATE_FILE


def broken(info: control.LabInfo) -> dict[str, Any]:
    """What this lab has broken: id → what heal needs (in the order broken)."""
    try:
        data = json.loads(_path(info).read_text())
    except (OSError, ValueError):
        return {}
    return dict(data.get("broken") or {}) if isinstance(data, dict) else {}


def _save(info: control.LabInfo, state: dict[str, Any]) -> None:
    control.write_json(_path(info), {"broken": state})


def _running(name: str | None) -> control.LabInfo:
    info = control.status(name)
    if not info.ready:
        flag = "" if info.name == control.DEFAULT_NAME else f" --name {info.name}"
        raise KalabError(f"The lab {info.name} is not running; start it with `kalab lab up{flag}`.")
    return info


def break_fault(name: str | None, fault_id: str) -> str:
    """Break the lab `name` with the catalog fault `fault_id`, for real; returns the id."""
    if fault_id not in FAULTS:
        raise KalabError(f'There is no fault "{fault_id[:40]}"; list them with `kalab lab faults`.')
    if fault_id not in RECIPES:
        raise KalabError(f"The lab cannot break {fault_id} ({NOT_YET[fault_id]}).")
    info = _running(name)
    state = broken(info)
    if fault_id in state:
        raise KalabError(f"The lab {info.name} already has {fault_id}; heal it first with `kalab lab heal`.")
    memo = RECIPES[fault_id].make(FaultSite(info))
    _save(info, {**state, fault_id: memo})
    return fault_id


def mystery(name: str | None, rng: random.Random | None = None) -> str:
    """Break one reproducible fault picked at random (among those not broken yet); the caller keeps it secret."""
    info = _running(name)
    left = sorted(set(RECIPES) - set(broken(info)))
    if not left:
        raise KalabError(f"The lab {info.name} has every fault broken already; heal it first with `kalab lab heal`.")
    return break_fault(name, (rng or random.Random()).choice(left))


def heal(name: str | None, fault_id: str | None = None) -> list[str]:
    """Undo `fault_id`, or everything broken (latest first) when None; returns the ids healed."""
    if fault_id is not None and fault_id not in FAULTS:
        raise KalabError(f'There is no fault "{fault_id[:40]}"; list them with `kalab lab faults`.')
    info = _running(name)
    state = broken(info)
    todo = [fault_id] if fault_id is not None else list(reversed(state))
    healed = []
    site = FaultSite(info)
    for each in todo:
        if each not in state:
            continue
        RECIPES[each].undo(site, state[each])
        del state[each]
        _save(info, state)
        healed.append(each)
    return healed
