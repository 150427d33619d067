"""Protobuf over HTTP: which bodies are protobuf, which clients want only protobuf back, and a 415 for the rest."""

from __future__ import annotations

import json

from kalab.lab.apiserver.errors import ApiError
from kalab.lab.apiserver.protobuf.envelope import MEDIA_TYPE, NotDecodable, decode

_JSON_RANGES = frozenset({"application/json", "application/*", "*/*"})


def _mime(media_range: str) -> tuple[str, bool]:
    mime, *params = (p.strip() for p in media_range.split(";"))
    return mime.lower(), any(p.replace(" ", "").startswith("as=") for p in params)


def is_protobuf(content_type: str) -> bool:
    return _mime(content_type)[0] == MEDIA_TYPE


def accepts_only_protobuf(accept: str | None) -> bool:
    """Whether the Accept header asks for plain protobuf objects and takes no plain JSON (client-go adds `*/*`)."""
    ranges = [_mime(r) for r in (accept or "").split(",") if r.strip()]
    return (MEDIA_TYPE, False) in ranges and not any(mime in _JSON_RANGES and not as_ for mime, as_ in ranges)


def body_as_json(body: bytes, api_version: str, kind: str) -> bytes:
    """A protobuf request body as the JSON body it stands for; 415 when the lab cannot read it."""
    try:
        obj = decode(body, api_version, kind)
    except NotDecodable as err:
        raise ApiError(
            415,
            "UnsupportedMediaType",
            f"the body of the request was in an unknown format ({MEDIA_TYPE}): {err}, so send it as JSON or YAML",
        ) from err
    return json.dumps(obj, separators=(",", ":")).encode("utf-8")
