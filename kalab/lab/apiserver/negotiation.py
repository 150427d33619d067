"""Content negotiation: which form of an object the client's Accept header asks for, and which request bodies
the API server can read.

As in kube-apiserver's `endpoints/handlers/negotiation`: plain JSON (or protobuf, encoded when the response is sent),
a `meta.k8s.io` Table, or PartialObjectMetadata.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from kalab.lab.apiserver import protobuf
from kalab.lab.apiserver.errors import ApiError


@dataclass(frozen=True)
class Output:
    form: str  # "json", "table" or "partial"
    api_version: str = "v1"


def _media_ranges(header: str) -> Iterator[tuple[str, dict[str, str]]]:
    for item in header.split(","):
        mime, *params = (p.strip() for p in item.split(";"))
        if mime:
            yield mime.lower(), {k.strip(): v.strip() for k, _, v in (p.partition("=") for p in params)}


def negotiate(accept: str | None) -> Output:
    """The first acceptable form in the Accept header: a Table, PartialObjectMetadata or plain JSON."""
    if not accept or not accept.strip():
        return Output("json")
    for mime, params in _media_ranges(accept):
        if mime == protobuf.MEDIA_TYPE and "as" not in params:
            return Output("json")  # send_json encodes it for a client that takes nothing else
        if mime not in ("application/json", "application/*", "*/*"):
            continue
        as_ = params.get("as")
        if as_ is None:
            return Output("json")
        if params.get("g") != "meta.k8s.io" or params.get("v") not in ("v1", "v1beta1"):
            continue  # e.g. aggregated discovery: fall through to a later choice
        if as_ == "Table":
            return Output("table", f"meta.k8s.io/{params['v']}")
        if as_ in ("PartialObjectMetadata", "PartialObjectMetadataList"):
            return Output("partial", f"meta.k8s.io/{params['v']}")
    raise ApiError(406, "NotAcceptable", f"only the following media types are accepted: application/json ({accept})")


def readable_body(content_type: str) -> bool:
    mime = content_type.split(";")[0].strip().lower()
    return mime.endswith(("json", "yaml")) or mime in ("", "*/*", "text/plain", "application/octet-stream")
