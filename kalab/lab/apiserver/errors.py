"""API errors as kube-apiserver returns them: a `Status` object with code, reason, message and details.

Messages and details follow k8s.io/apimachinery's errors package word for word (NewNotFound, NewAlreadyExists,
NewConflict, NewInvalid, NewForbidden, …), since clients match on them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

# field.ErrorType texts → the StatusCause reason kube-apiserver reports for them
_CAUSES = {
    "Invalid value": "FieldValueInvalid",
    "Required value": "FieldValueRequired",
    "Unsupported value": "FieldValueNotSupported",
    "Duplicate value": "FieldValueDuplicate",
    "Forbidden": "FieldValueForbidden",
    "Too long": "FieldValueTooLong",
    "Too many": "FieldValueTooMany",
    "Not found": "FieldValueNotFound",
    "Internal error": "InternalError",
}
_FIELD_ERROR = re.compile(r"^(?P<field>[^\s:]+): (?P<body>(?P<type>" + "|".join(_CAUSES) + r")\b.*)$", re.S)


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details or {}

    def status(self) -> dict[str, Any]:
        # Keys in metav1.Status's order, as kube-apiserver serialises it.
        status: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
        }
        if self.details:
            status["details"] = self.details
        status["code"] = self.code
        return status


def details(name: str, resource: str, group: str = "", causes: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """metav1.StatusDetails: name, group (when not core), kind (the resource, as the errors package puts it)."""
    out: dict[str, Any] = {"name": name}
    if group:
        out["group"] = group
    out["kind"] = resource
    if causes:
        out["causes"] = causes
    return out


def _qualified(resource: str, group: str) -> str:
    return f"{resource}.{group}" if group else resource


def not_found(resource: str, name: str, group: str = "") -> ApiError:
    return ApiError(
        404, "NotFound", f'{_qualified(resource, group)} "{name}" not found', details(name, resource, group)
    )


def already_exists(resource: str, name: str, group: str = "") -> ApiError:
    return ApiError(
        409, "AlreadyExists", f'{_qualified(resource, group)} "{name}" already exists', details(name, resource, group)
    )


MODIFIED = "the object has been modified; please apply your changes to the latest version and try again"


def conflict(resource: str, name: str, group: str = "", why: str = MODIFIED) -> ApiError:
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {_qualified(resource, group)} "{name}": {why}',
        details(name, resource, group),
    )


def field_causes(message: str) -> list[dict[str, Any]]:
    """StatusCauses of a field error list as NewInvalid words it (`spec.x: Invalid value: …`)."""
    parts = message[1:-1].split(", ") if message.startswith("[") and message.endswith("]") else [message]
    causes = []
    for part in parts:
        match = _FIELD_ERROR.match(part)
        if match:
            causes.append({"reason": _CAUSES[match["type"]], "message": match["body"], "field": match["field"]})
    return causes


def invalid(kind: str, name: str, message: str, group: str = "") -> ApiError:
    """422 Invalid: `Kind[.group] "name" is invalid: <field errors>`; details name the kind, not the resource."""
    qualified = f"{kind}.{group}" if group else kind
    return ApiError(
        422,
        "Invalid",
        f'{qualified} "{name}" is invalid: {message}',
        details(name, kind, group, field_causes(message)),
    )


# field.ErrorType: the reason a StatusCause carries → the words its message starts with
_TYPE_WORDS = {
    "FieldValueInvalid": "Invalid value",
    "FieldValueTypeInvalid": "Invalid value",
    "FieldValueRequired": "Required value",
    "FieldValueNotSupported": "Unsupported value",
    "FieldValueDuplicate": "Duplicate value",
    "FieldValueForbidden": "Forbidden",
    "FieldValueTooLong": "Too long",
    "FieldValueTooMany": "Too many",
    "FieldValueNotFound": "Not found",
}
_VALUELESS = frozenset({"FieldValueRequired", "FieldValueForbidden", "FieldValueTooLong"})
_OMITTED = object()
MAX_ECHO = 120  # characters of a refused value repeated in a message; longer ones are shortened


def echo(value: Any) -> str:
    """A refused value as field.Error prints it (strings quoted, numbers and booleans bare), shortened."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, int | float):
        text = json.dumps(value)
    elif isinstance(value, str):
        text = json.dumps(value if len(value) <= MAX_ECHO else value[:MAX_ECHO] + "...", ensure_ascii=False)
    else:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
        if len(text) > MAX_ECHO:
            text = text[:MAX_ECHO] + "..."
    return text


@dataclass(frozen=True)
class FieldError:
    """One field.Error of k8s.io/apimachinery: what is wrong (`reason`), where (`field`), the value and a detail."""

    reason: str
    field: str
    value: Any = _OMITTED
    detail: str = ""

    def body(self) -> str:
        """field.Error.ErrorBody(): `Invalid value: "x": detail`, `Required value`, …"""
        text = _TYPE_WORDS[self.reason]
        if self.reason not in _VALUELESS and self.value is not _OMITTED:
            text += f": {echo(self.value)}"
        return f"{text}: {self.detail}" if self.detail else text

    def __str__(self) -> str:
        return f"{self.field}: {self.body()}"


def field_invalid(kind: str, name: str, errors: list[FieldError], group: str = "") -> ApiError:
    """422 Invalid from a field error list, as errors.NewInvalid builds it (one error bare, several in [...])."""
    listed = [str(e) for e in errors]
    aggregate = listed[0] if len(listed) == 1 else "[" + ", ".join(listed) + "]"
    qualified = f"{kind}.{group}" if group else kind
    causes = [{"reason": e.reason, "message": e.body(), "field": e.field} for e in errors]
    return ApiError(422, "Invalid", f'{qualified} "{name}" is invalid: {aggregate}', details(name, kind, group, causes))


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def forbidden(message: str) -> ApiError:
    return ApiError(403, "Forbidden", message)


def forbidden_on(
    resource: str, name: str, why: str, group: str = "", causes: list[dict[str, Any]] | None = None
) -> ApiError:
    """403 Forbidden about one object: `resource "name" is forbidden: why`."""
    return ApiError(
        403,
        "Forbidden",
        f'{_qualified(resource, group)} "{name}" is forbidden: {why}',
        details(name, resource, group, causes),
    )


def gone(message: str) -> ApiError:
    return ApiError(410, "Expired", message)
