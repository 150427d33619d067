"""`pods/proxy`: one HTTP request handed to the kubelet, which makes it to the pod's port from inside the lab, and
its answer written back, hop-by-hop headers dropped both ways.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from kalab.lab.apiserver.errors import ApiError
from kalab.lab.apiserver.hooks import PodHooks
from kalab.lab.apiserver.streams.exchange import GONE, tokens, write_status
from kalab.lab.apiserver.transport import Exchange

_HOP_BY_HOP: Final = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)


def _forwardable(headers: Iterable[tuple[str, str]], drop: Iterable[str] = ()) -> list[tuple[str, str]]:
    """Headers minus the hop-by-hop ones (RFC 9110 7.6.1), including any the Connection header names."""
    pairs = list(headers)
    dropped = set(_HOP_BY_HOP) | {d.lower() for d in drop}
    dropped |= {t.lower() for t in tokens(v for k, v in pairs if k.lower() == "connection")}
    return [(k, v) for k, v in pairs if k.lower() not in dropped]


def serve_proxy(
    handler: Exchange,
    hooks: PodHooks,
    namespace: str,
    pod: str,
    port: int,
    path: str,
    method: str,
    body: bytes,
) -> None:
    """Forward one HTTP request to the pod's port through the kubelet and write its answer back."""
    # Authorization is the client's credential for this API server, never the pod's business. Host and
    # Content-Length describe this hop: the kubelet's request sets its own from the target and the body.
    headers = _forwardable(handler.headers.items(), ("authorization", "host", "content-length"))
    headers.append(("X-Forwarded-For", str(handler.request.client_address[0])))
    try:
        response = hooks.proxy(namespace, pod, port, path, method, headers, body)
    except ApiError as error:
        write_status(handler, error)
        return
    except OSError as exc:
        # What kube-apiserver answers when it cannot reach the pod.
        write_status(handler, ApiError(503, "ServiceUnavailable", f"error trying to reach service: {exc}"))
        return
    try:
        has_body = method.upper() != "HEAD" and response.status not in (204, 304) and response.status >= 200
        handler.respond(
            response.status,
            _forwardable(response.headers, ("content-length",)),
            response.body if has_body or method.upper() == "HEAD" else b"",
            content_length=has_body or method.upper() == "HEAD",
        )
    except GONE:
        handler.close_after()
