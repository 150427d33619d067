"""The OpenAPI v2 document in protobuf, the only form kubectl's and client-go's OpenAPI v2 clients ask for.

They send `Accept: application/com.github.proto-openapi.spec.v2@v1.0+protobuf` and nothing else, then decode gnostic's
`openapi.v2.Document` message. The encoder is written out here because no maintained Python package ships gnostic's
compiled messages, and the subset kube-apiserver's documents use (info, paths with operations and query parameters,
definitions, vendor extensions as YAML) is a few dozen fields of plain protobuf wire format. Field numbers follow
gnostic's OpenAPIv2.proto.
"""

from __future__ import annotations

import json
import struct
from typing import Any

Doc = dict[str, Any]


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int64s are ten-byte two's complement
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _key(field: int, wire: int) -> bytes:
    return _varint(field << 3 | wire)


def _bytes(field: int, data: bytes) -> bytes:
    return _key(field, 2) + _varint(len(data)) + data


def _string(field: int, value: Any) -> bytes:
    return _bytes(field, str(value).encode()) if value not in (None, "") else b""


def _bool(field: int, value: Any) -> bytes:
    return _key(field, 0) + b"\x01" if value is True else b""


def _int(field: int, value: Any) -> bytes:
    return _key(field, 0) + _varint(int(value)) if isinstance(value, int) and not isinstance(value, bool) else b""


def _double(field: int, value: Any) -> bytes:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return b""
    return _key(field, 1) + struct.pack("<d", float(value))


def _any(field: int, value: Any) -> bytes:
    """gnostic's Any: the value as YAML text (JSON is YAML), which is what kube-openapi reads back."""
    return _bytes(field, _string(2, json.dumps(value)))


def _named_any(field: int, name: str, value: Any) -> bytes:
    return _bytes(field, _string(1, name) + _any(2, value))


def _extensions(field: int, doc: Doc) -> bytes:
    return b"".join(_named_any(field, k, v) for k, v in doc.items() if k.startswith("x-"))


def schema(doc: Doc) -> bytes:
    out = [
        _string(1, doc.get("$ref")),
        _string(2, doc.get("format")),
        _string(3, doc.get("title")),
        _string(4, doc.get("description")),
        _any(5, doc["default"]) if "default" in doc else b"",
        _double(6, doc.get("multipleOf")),
        _double(7, doc.get("maximum")),
        _bool(8, doc.get("exclusiveMaximum")),
        _double(9, doc.get("minimum")),
        _bool(10, doc.get("exclusiveMinimum")),
        _int(11, doc.get("maxLength")),
        _int(12, doc.get("minLength")),
        _string(13, doc.get("pattern")),
        _int(14, doc.get("maxItems")),
        _int(15, doc.get("minItems")),
        _bool(16, doc.get("uniqueItems")),
        _int(17, doc.get("maxProperties")),
        _int(18, doc.get("minProperties")),
        b"".join(_string(19, r) for r in doc.get("required") or []),
        b"".join(_any(20, e) for e in doc.get("enum") or []),
    ]
    additional = doc.get("additionalProperties")
    if isinstance(additional, dict):
        out.append(_bytes(21, _bytes(1, schema(additional))))
    elif isinstance(additional, bool):
        out.append(_bytes(21, _key(2, 0) + (b"\x01" if additional else b"\x00")))
    if doc.get("type"):
        types = doc["type"] if isinstance(doc["type"], list) else [doc["type"]]
        out.append(_bytes(22, b"".join(_string(1, t) for t in types)))
    if isinstance(doc.get("items"), dict):
        out.append(_bytes(23, _bytes(1, schema(doc["items"]))))
    out += [_bytes(24, schema(s)) for s in doc.get("allOf") or []]
    if doc.get("properties"):
        named = b"".join(
            _bytes(1, _string(1, name) + _bytes(2, schema(prop))) for name, prop in doc["properties"].items()
        )
        out.append(_bytes(25, named))
    out.append(_bool(27, doc.get("readOnly")))
    if "example" in doc:
        out.append(_any(30, doc["example"]))
    out.append(_extensions(31, doc))
    return b"".join(out)


def _parameter(doc: Doc) -> bytes:
    if doc.get("in") == "body":
        body = (
            _string(1, doc.get("description"))
            + _string(2, doc.get("name"))
            + _string(3, "body")
            + _bool(4, doc.get("required"))
            + _bytes(5, schema(doc.get("schema") or {}))
        )
        return _bytes(1, _bytes(1, body))
    query = (
        _bool(1, doc.get("required"))
        + _string(2, doc.get("in"))
        + _string(3, doc.get("description"))
        + _string(4, doc.get("name"))
        + _string(6, doc.get("type"))
    )
    slot = {"header": 1, "formData": 2, "query": 3, "path": 4}.get(str(doc.get("in")), 3)
    if slot == 4:  # PathParameterSubSchema numbers its fields without allow_empty_value
        query = (
            _bool(1, doc.get("required"))
            + _string(2, "path")
            + _string(3, doc.get("description"))
            + _string(4, doc.get("name"))
            + _string(5, doc.get("type"))
        )
    return _bytes(1, _bytes(2, _bytes(slot, query)))


def _operation(doc: Doc) -> bytes:
    responses = b""
    for code, response in (doc.get("responses") or {}).items():
        inner = _string(1, response.get("description"))
        if isinstance(response.get("schema"), dict):
            inner += _bytes(2, _bytes(1, schema(response["schema"])))
        responses += _bytes(1, _string(1, code) + _bytes(2, _bytes(1, inner)))
    return b"".join(
        [
            b"".join(_string(1, t) for t in doc.get("tags") or []),
            _string(3, doc.get("description")),
            _string(5, doc.get("operationId")),
            b"".join(_string(6, p) for p in doc.get("produces") or []),
            b"".join(_string(7, c) for c in doc.get("consumes") or []),
            b"".join(_bytes(8, _parameter(p)) for p in doc.get("parameters") or []),
            _bytes(9, responses),
            b"".join(_string(10, s) for s in doc.get("schemes") or []),
            _extensions(13, doc),
        ]
    )


_METHODS = {"get": 2, "put": 3, "post": 4, "delete": 5, "options": 6, "head": 7, "patch": 8}


def document(doc: Doc) -> bytes:
    """gnostic `openapi.v2.Document` bytes of a Swagger 2.0 JSON document."""
    info = doc.get("info") or {}
    paths = b""
    for path, item in (doc.get("paths") or {}).items():
        body = b"".join(_bytes(_METHODS[m], _operation(op)) for m, op in item.items() if m in _METHODS)
        body += b"".join(_bytes(9, _parameter(p)) for p in item.get("parameters") or [])
        paths += _bytes(2, _string(1, path) + _bytes(2, body))
    definitions = b"".join(
        _bytes(1, _string(1, name) + _bytes(2, schema(s))) for name, s in (doc.get("definitions") or {}).items()
    )
    return b"".join(
        [
            _string(1, doc.get("swagger", "2.0")),
            _bytes(2, _string(1, info.get("title")) + _string(2, info.get("version"))),
            _bytes(8, paths),
            _bytes(9, definitions),
        ]
    )
