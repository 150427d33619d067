"""`Table` responses (meta.k8s.io/v1): the columns `kubectl get` prints, computed on the server as kube-apiserver does.

Without them kubectl shows only NAME and AGE. Built-in kinds get kube-apiserver's columns (`printers`); kinds that
are CRDs on a real OpenShift cluster (OLM, SCC) get the printer columns of those CRDs; CRDs created at run time
bring their own additionalPrinterColumns through ResourceType.columns, read with a small JSONPath subset.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from kalab.lab.apiserver.printers import AGE, BUILTIN_COLUMNS, NAME, Cell, Obj, PrintColumn, age
from kalab.lab.apiserver.resources import Column, ResourceType
from kalab.model import objects

# Kinds that are CRDs on a real OpenShift cluster: the printer columns those CRDs declare.
CRD_LIKE_COLUMNS: dict[str, tuple[Column, ...]] = {
    "operators.coreos.com/clusterserviceversions": (
        Column("Display", "string", ".spec.displayName"),
        Column("Version", "string", ".spec.version"),
        Column("Replaces", "string", ".spec.replaces"),
        Column("Phase", "string", ".status.phase"),
    ),
    "operators.coreos.com/subscriptions": (
        Column("Package", "string", ".spec.name"),
        Column("Source", "string", ".spec.source"),
        Column("Channel", "string", ".spec.channel"),
    ),
    "operators.coreos.com/installplans": (
        Column("CSV", "string", ".spec.clusterServiceVersionNames"),
        Column("Approval", "string", ".spec.approval"),
        Column("Approved", "boolean", ".spec.approved"),
    ),
    "operators.coreos.com/catalogsources": (
        Column("Display", "string", ".spec.displayName"),
        Column("Type", "string", ".spec.sourceType"),
        Column("Publisher", "string", ".spec.publisher"),
        Column("Age", "date", ".metadata.creationTimestamp"),
    ),
    "security.openshift.io/securitycontextconstraints": (
        Column("Priv", "string", ".allowPrivilegedContainer"),
        Column("Caps", "string", ".allowedCapabilities"),
        Column("SELinux", "string", ".seLinuxContext.type"),
        Column("RunAsUser", "string", ".runAsUser.type"),
        Column("FSGroup", "string", ".fsGroup.type"),
        Column("SupGroup", "string", ".supplementalGroups.type"),
        Column("Priority", "string", ".priority"),
        Column("ReadOnlyRootFS", "string", ".readOnlyRootFilesystem"),
        Column("Volumes", "string", ".volumes"),
    ),
}

# -- JSONPath subset for printer columns -------------------------------------------------------------------------

_STEP = re.compile(r"\.([^.\[\]]+)|\[(\*|-?\d+)\]|\['([^']*)'\]")


def jsonpath(obj: Any, path: str) -> list[Any]:
    """Values at a printer column's path: `.a.b`, `.a[0].b`, `.a[*].b`, `.a['x.y']`, optionally in `{…}`."""
    expr = path.strip()
    if expr.startswith("{") and expr.endswith("}"):
        expr = expr[1:-1].strip()
    expr = expr.removeprefix("$")
    values: list[Any] = [obj]
    pos = 0
    while pos < len(expr):
        match = _STEP.match(expr, pos)
        if not match:
            return []  # outside the subset: show nothing rather than guess
        key, index, quoted = match.groups()
        pos = match.end()
        nxt: list[Any] = []
        for value in values:
            if key is not None or quoted is not None:
                field = key if key is not None else quoted
                if isinstance(value, Mapping) and field in value:
                    nxt.append(value[field])
            elif isinstance(value, list):
                if index == "*":
                    nxt.extend(value)
                elif -len(value) <= int(index) < len(value):
                    nxt.append(value[int(index)])
        values = nxt
    return values


def _format_value(value: Any, type_: str) -> Cell:
    if type_ == "date":
        return age(value)
    if type_ == "integer" and isinstance(value, int | float) and not isinstance(value, bool):
        return int(value)
    if type_ == "number" and isinstance(value, int | float) and not isinstance(value, bool):
        return value
    if type_ == "boolean" and isinstance(value, bool):
        return value
    if isinstance(value, list) and all(not isinstance(v, dict | list) for v in value):
        return ",".join(_scalar_text(v) for v in value)
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    return _scalar_text(value)


def _scalar_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _from_column(column: Column) -> PrintColumn:
    def render(obj: Obj) -> Cell:
        values = jsonpath(obj, column.json_path)
        if not values:
            return None  # kubectl prints <none>
        return _format_value(values[0] if len(values) == 1 else values, column.type)

    return PrintColumn(
        column.name,
        render,
        type="string" if column.type == "date" else column.type,
        priority=column.priority,
        description=column.description,
    )


def columns_for(rt: ResourceType) -> tuple[PrintColumn, ...]:
    """The columns of a resource's Table: built-in printers, the CRD's printer columns, or NAME and AGE."""
    if rt.key in BUILTIN_COLUMNS:
        return BUILTIN_COLUMNS[rt.key]
    printer = rt.columns or CRD_LIKE_COLUMNS.get(rt.key, ())
    if not printer:
        return (NAME, AGE)
    # Like kube-apiserver for CRDs: NAME, then exactly the declared columns (which usually include Age).
    return (NAME, *(_from_column(c) for c in printer))


# -- the Table document ------------------------------------------------------------------------------------------


def _definition(col: PrintColumn) -> dict[str, Any]:
    return {
        "name": col.name,
        "type": col.type,
        "format": col.format,
        "description": col.description,
        "priority": col.priority,
    }


def partial_metadata(obj: Obj, api_version: str = "meta.k8s.io/v1") -> Obj:
    return {"kind": "PartialObjectMetadata", "apiVersion": api_version, "metadata": objects.meta(obj)}


def table(
    rt: ResourceType,
    objects: Iterable[Obj],
    include_object: str = "Metadata",
    resource_version: str = "",
    api_version: str = "meta.k8s.io/v1",
    with_columns: bool = True,
    continue_token: str = "",
) -> dict[str, Any]:
    """A Table of `objects`; `include_object` is None, Metadata (PartialObjectMetadata) or Object."""
    cols = columns_for(rt)
    rows = []
    for obj in objects:
        row: dict[str, Any] = {"cells": [col.render(obj) for col in cols]}
        if include_object == "Object":
            row["object"] = obj
        elif include_object != "None":
            row["object"] = partial_metadata(obj, api_version)
        rows.append(row)
    metadata: dict[str, Any] = {"resourceVersion": resource_version}
    if continue_token:
        metadata["continue"] = continue_token
    return {
        "kind": "Table",
        "apiVersion": api_version,
        "metadata": metadata,
        "columnDefinitions": [_definition(c) for c in cols] if with_columns else [],
        "rows": rows,
    }
