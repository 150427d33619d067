"""Reading Kubernetes objects held as plain dicts (as the API returns them or YAML loads them), and building the
few pieces every controller writes (owner references).

One vocabulary for the whole code base, in the spirit of kopf's `bodies` and kr8s' `.metadata/.spec/.status`:
a missing or malformed section reads as empty, so callers write `spec(svc).get("type")` instead of
`(svc.get("spec") or {}).get("type")`. The readers never copy and never write: take `dict(...)` of what they
return before changing it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def _section(obj: Mapping[str, Any] | None, key: str) -> Mapping[str, Any]:
    value = obj.get(key) if obj is not None else None
    return value if isinstance(value, Mapping) else {}  # a fresh one: a caller may put it into a new object


def meta(obj: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """The object's `metadata`; empty when the object (or its metadata) is missing."""
    return _section(obj, "metadata")


def spec(obj: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """The object's `spec`; empty when the object (or its spec) is missing."""
    return _section(obj, "spec")


def status(obj: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """The object's `status`; empty when the object (or its status) is missing."""
    return _section(obj, "status")


def name_of(obj: Mapping[str, Any] | None) -> str:
    return str(meta(obj).get("name") or "")


def namespace_of(obj: Mapping[str, Any] | None, default: str = "") -> str:
    """The object's namespace, or `default` (kubectl's own default is `"default"`) when it has none."""
    return str(meta(obj).get("namespace") or default)


def uid_of(obj: Mapping[str, Any] | None) -> str:
    return str(meta(obj).get("uid") or "")


def resource_version_of(obj: Mapping[str, Any] | None) -> str:
    """The object's resourceVersion; empty when it has none (an object not yet stored, or a body without one)."""
    return str(meta(obj).get("resourceVersion") or "")


def finalizers_of(obj: Mapping[str, Any] | None) -> list[str]:
    """The object's `metadata.finalizers`, as a new list; empty when it has none."""
    found = meta(obj).get("finalizers")
    return list(found) if isinstance(found, list) else []


def labels_of(obj: Mapping[str, Any] | None) -> Mapping[str, str]:
    return _section(meta(obj), "labels")


def annotations_of(obj: Mapping[str, Any] | None) -> Mapping[str, str]:
    return _section(meta(obj), "annotations")


def owner_reference(owner: Mapping[str, Any], controller: bool = True) -> dict[str, Any]:
    """An ownerReference to `owner`; the controlling one (the default) also blocks the owner's deletion until
    this dependent is gone, as Kubernetes' own controllers set it."""
    ref: dict[str, Any] = {
        "apiVersion": owner.get("apiVersion"),
        "kind": owner.get("kind"),
        "name": meta(owner).get("name"),
        "uid": meta(owner).get("uid"),
    }
    if controller:
        ref |= {"controller": True, "blockOwnerDeletion": True}
    return ref


def owner_references(obj: Mapping[str, Any] | None) -> list[Mapping[str, Any]]:
    refs = meta(obj).get("ownerReferences")
    return [r for r in refs if isinstance(r, Mapping)] if isinstance(refs, list) else []


def controller_of(obj: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The ownerReference marked `controller: true` (at most one per object), or None."""
    return next((dict(ref) for ref in owner_references(obj) if ref.get("controller")), None)


def owned_by(obj: Mapping[str, Any], owner: Mapping[str, Any]) -> bool:
    """Whether `owner` is the controller of `obj` (matched by uid, as the garbage collector does)."""
    ref = controller_of(obj)
    return ref is not None and ref.get("uid") == meta(owner).get("uid")


def conditions_of(obj: Mapping[str, Any] | None) -> list[Mapping[str, Any]]:
    found = status(obj).get("conditions")
    return [c for c in found if isinstance(c, Mapping)] if isinstance(found, list) else []


def condition(obj: Mapping[str, Any] | None, type_: str) -> Mapping[str, Any] | None:
    """The status condition of this type, or None."""
    return next((c for c in conditions_of(obj) if c.get("type") == type_), None)


def condition_true(obj: Mapping[str, Any] | None, type_: str) -> bool:
    """Whether the status condition of this type says `True` (a missing one does not)."""
    found = condition(obj, type_)
    return found is not None and found.get("status") == "True"


def phase_of(obj: Mapping[str, Any] | None) -> str:
    return str(status(obj).get("phase") or "")


def pod_ready(pod: Mapping[str, Any] | None) -> bool:
    """A pod whose Ready condition is True, as endpoints and rollouts count it."""
    return condition_true(pod, "Ready")


def pod_terminal(pod: Mapping[str, Any] | None) -> bool:
    """A pod that will never run again (its phase is Succeeded or Failed)."""
    return phase_of(pod) in ("Succeeded", "Failed")
