"""`pods/portforward`, served as the kubelet serves it: over SPDY/3.1 (`httpstream`, what kubectl speaks) or over
the websocket channel protocol (`websocket`, what the official Python client speaks).

kubectl 1.31 and later first ask for a WebSocket upgrade carrying the same SPDY frames (subprotocol
`SPDY/3.1+portforward.k8s.io`) and fall back to plain SPDY when that upgrade is refused with any non-101 answer.
This server refuses it, as kube-apiserver 1.30 (the release the lab reports) does: its PortForwardWebsockets gate
is alpha and off until 1.31 (kubernetes/kubernetes#125528). Every kubectl speaks the plain SPDY upgrade.
"""

from kalab.lab.apiserver.hooks import PodHooks
from kalab.lab.apiserver.portforward.httpstream import PROTOCOL, WEBSOCKET_PROTOCOL, Session, negotiate, serve_spdy
from kalab.lab.apiserver.portforward.websocket import CHANNEL_PROTOCOLS, serve_channels
from kalab.lab.apiserver.streams.exchange import tokens
from kalab.lab.apiserver.transport import Exchange

__all__ = [
    "CHANNEL_PROTOCOLS",
    "PROTOCOL",
    "WEBSOCKET_PROTOCOL",
    "Session",
    "negotiate",
    "serve_port_forward",
]


def serve_port_forward(handler: Exchange, hooks: PodHooks, namespace: str, pod: str, uid: str) -> None:
    """Upgrade the request to SPDY/3.1 (or websocket channels) and forward to the pod until the client leaves."""
    if "websocket" in {t.lower() for t in tokens(handler.headers.get_all("Upgrade") or [])}:
        serve_channels(handler, hooks, namespace, pod, uid)
        return
    serve_spdy(handler, hooks, namespace, pod, uid)
