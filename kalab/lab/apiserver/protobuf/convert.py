"""Kubernetes protobuf messages to the JSON objects the store keeps, and back.

Field names are Kubernetes' JSON names (the .proto files use them). Whether a field is a Go pointer (nullable in
the schema) decides what appears: a pointer set on the wire is kept even when zero or empty (`replicas: 0`,
`emptyDir: {}`), while a zero scalar or empty struct held by value is Go's "unset" and stays out, as `omitempty`
leaves it out of JSON; empty lists and maps are never on the wire and stay out too. A few apimachinery types have
JSON forms of their own (Time, IntOrString, Quantity, …), handled by full name; `google.protobuf.json_format`
knows none of this, hence this walk.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, cast

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from kalab.lab.apiserver.protobuf.schema import (
    META,
    RUNTIME,
    fields,
    is_inline,
    is_pointer,
    json_fields,
    json_name,
    message_class,
)


class Omit:
    """A value Go's JSON encoding writes as null or leaves out (a zero Time, an empty RawExtension)."""


OMIT = Omit()
_INTSTR = "k8s.io.apimachinery.pkg.util.intstr.IntOrString"
_QUANTITY = "k8s.io.apimachinery.pkg.api.resource.Quantity"
_NS = {"h": 3_600_000_000_000, "m": 60_000_000_000, "s": 1_000_000_000, "ms": 1_000_000, "us": 1000, "µs": 1000}
_NS["ns"] = 1
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(h|ms|us|µs|ns|m|s)")


def to_json(message: Message) -> Any:
    """The JSON form of `message` (a dict for ordinary messages), or OMIT."""
    descriptor = _descriptor(message)
    special = _TO_JSON.get(descriptor.full_name)
    if special is not None:
        return special(message)
    if _is_list_wrapper(descriptor):
        return list(getattr(message, "items"))  # noqa: B009 - the field is named like dict.items
    out: dict[str, Any] = {}
    for field in fields(descriptor):
        value = getattr(message, field.name)
        key = json_name(field)
        if _is_map(field):
            if value:
                entry = _map_value(field)
                out[key] = {k: _value_to_json(entry, value[k]) for k in sorted(value)}  # as Go writes maps
        elif field.is_repeated:
            if value:
                out[key] = [_value_to_json(field, v) for v in value]
        elif is_inline(field):
            out.update(to_json(value))
        elif message.HasField(field.name):
            if field.type != FieldDescriptor.TYPE_MESSAGE and not value and not is_pointer(field):
                continue
            converted = _value_to_json(field, value)
            if converted is OMIT or (converted == {} and not is_pointer(field)):
                continue  # an empty struct Go holds by value is no different from none (`emptyDir: {}` stays)
            out[key] = converted
    return out


def from_json(descriptor: Descriptor, obj: Any) -> Message:
    """A message of `descriptor` holding the JSON value `obj` (fields the schema lacks are dropped)."""
    message = message_class(descriptor)()
    _fill(message, obj)
    return message


def _value_to_json(field: FieldDescriptor, value: Any) -> Any:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return to_json(value)
    if field.type == FieldDescriptor.TYPE_BYTES:
        return base64.b64encode(value).decode("ascii")
    return value


def _descriptor(message: Message) -> Descriptor:
    return cast(Descriptor, message.DESCRIPTOR)


def _map_value(field: FieldDescriptor) -> FieldDescriptor:
    entry = field.message_type
    assert entry is not None
    return entry.fields_by_name["value"]


def _is_map(field: FieldDescriptor) -> bool:
    return field.message_type is not None and field.message_type.GetOptions().map_entry


def _is_list_wrapper(descriptor: Descriptor) -> bool:
    """Go named slice types (`Verbs`, `ExtraValue`) that protobuf wraps in a message with one repeated `items`."""
    return descriptor.full_name == f"{META}.Verbs" or descriptor.name == "ExtraValue"


def _fill(message: Message, obj: Any) -> None:
    descriptor = _descriptor(message)
    special = _FROM_JSON.get(descriptor.full_name)
    if special is not None:
        special(message, obj)
        return
    if _is_list_wrapper(descriptor):
        getattr(message, "items").extend(str(v) for v in obj or [])  # noqa: B009 - see to_json
        return
    if not isinstance(obj, dict):
        raise ValueError(f"{descriptor.name} must be a JSON object, not {type(obj).__name__}")
    fields = json_fields(descriptor)
    for key, value in obj.items():
        path = fields.get(key)
        if path is None or value is None:
            continue  # apiVersion and kind travel in the envelope; fields newer than the schema are dropped
        holder = message
        for inline in path[:-1]:
            holder = getattr(holder, inline.name)
        field = path[-1]
        target = getattr(holder, field.name)
        if _is_map(field):
            entry = _map_value(field)
            for k, v in value.items():
                if entry.type == FieldDescriptor.TYPE_MESSAGE:
                    _fill(target[k], v)
                else:
                    target[k] = _scalar(entry, v)
        elif field.is_repeated:
            for item in value:
                if field.type == FieldDescriptor.TYPE_MESSAGE:
                    _fill(target.add(), item)
                else:
                    target.append(_scalar(field, item))
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            target.SetInParent()  # present even when empty, as Go writes a non-nil struct
            _fill(target, value)
        else:
            setattr(holder, field.name, _scalar(field, value))


def _scalar(field: FieldDescriptor, value: Any) -> Any:
    if field.type == FieldDescriptor.TYPE_BYTES:
        return base64.b64decode(value)
    if field.type == FieldDescriptor.TYPE_STRING:
        return str(value)
    if field.type == FieldDescriptor.TYPE_BOOL:
        return bool(value)
    if field.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return float(value)
    return int(value)


# -- apimachinery's types with a JSON form of their own ----------------------------------------------------------


def _time_to_json(message: Any, micro: bool) -> Any:
    if not message.seconds and not message.nanos:
        return OMIT  # Go sends a zero Time as an empty message; its JSON is null
    moment = datetime.fromtimestamp(message.seconds, UTC)
    if micro:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{message.nanos // 1000:06d}Z"
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")  # Time keeps whole seconds, in JSON as on the wire


def _time_from_json(message: Any, value: Any) -> None:
    moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    message.seconds = int(moment.timestamp() // 1)
    message.nanos = moment.microsecond * 1000


def _raw_to_json(message: Any) -> Any:
    raw: bytes = message.raw if hasattr(message, "raw") else message.Raw
    if not raw:
        return OMIT
    if raw.startswith(b"k8s\x00"):
        from kalab.lab.apiserver.protobuf.envelope import decode  # an embedded protobuf object

        return decode(raw)
    return json.loads(raw)


def _raw_from_json(message: Any, value: Any) -> None:
    data = json.dumps(value, separators=(",", ":")).encode("utf-8")
    if hasattr(message, "raw"):
        message.raw = data
    else:
        message.Raw = data


def _intstr_to_json(message: Any) -> Any:
    return message.strVal if message.type == 1 else message.intVal


def _intstr_from_json(message: Any, value: Any) -> None:
    if isinstance(value, int):
        message.type, message.intVal = 0, value
    else:
        message.type, message.strVal = 1, str(value)


def go_duration(ns: int) -> str:
    """Nanoseconds as Go's time.Duration.String() writes them ("1h2m3s", "1.5s", "300ms")."""
    if ns == 0:
        return "0s"
    sign, ns = ("-", -ns) if ns < 0 else ("", ns)
    if ns < _NS["s"]:
        for unit in ("ms", "µs", "ns"):
            if ns >= _NS[unit]:
                return sign + _decimal(ns, _NS[unit]) + unit
    hours, rest = divmod(ns, _NS["h"])
    minutes, rest = divmod(rest, _NS["m"])
    text = _decimal(rest, _NS["s"]) + "s"
    if hours:
        return f"{sign}{hours}h{minutes}m{text}"
    return f"{sign}{minutes}m{text}" if minutes else sign + text


def _decimal(value: int, unit: int) -> str:
    whole, fraction = divmod(value, unit)
    digits = str(fraction).rjust(len(str(unit)) - 1, "0").rstrip("0")
    return f"{whole}.{digits}" if digits else str(whole)


def parse_go_duration(text: str) -> int:
    sign = -1 if text.startswith("-") else 1
    body = text.lstrip("+-")
    if body == "0":
        return 0
    parts = _DURATION_PART.findall(body)
    if not parts or "".join(n + u for n, u in parts) != body:
        raise ValueError(f"invalid duration {text!r}")
    return sign * round(sum(float(n) * _NS[u] for n, u in parts))


def _duration_from_json(message: Any, value: Any) -> None:
    message.duration = parse_go_duration(str(value))


_TO_JSON: dict[str, Callable[[Any], Any]] = {
    f"{META}.Time": lambda m: _time_to_json(m, micro=False),
    f"{META}.MicroTime": lambda m: _time_to_json(m, micro=True),
    f"{META}.Duration": lambda m: go_duration(m.duration),
    f"{META}.FieldsV1": _raw_to_json,
    f"{RUNTIME}.RawExtension": _raw_to_json,
    _INTSTR: _intstr_to_json,
    _QUANTITY: lambda m: m.string,
}
_FROM_JSON: dict[str, Callable[[Any, Any], None]] = {
    f"{META}.Time": _time_from_json,
    f"{META}.MicroTime": _time_from_json,
    f"{META}.Duration": _duration_from_json,
    f"{META}.FieldsV1": _raw_from_json,
    f"{RUNTIME}.RawExtension": _raw_from_json,
    _INTSTR: _intstr_from_json,
    _QUANTITY: lambda m, v: setattr(m, "string", str(v)),
}
