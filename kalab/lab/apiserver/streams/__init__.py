"""The streaming pod subresources: `pods/exec` and `pods/attach` over websocket channels, `pods/log` (followed or
not), and the pod proxy.

The HTTP server parses and routes the request; these then answer its `transport.Exchange` and speak what real
clients expect from kube-apiserver: `remotecommand` (exec and attach) over `wsstream` (the Kubernetes channel
protocol on a websocket, which port forwarding's websocket form speaks too), `logs`, `proxy`, and `exchange` for
what they share (a client that went away, an error answered as a `Status` with its code). Callers use the names
below.
"""

from kalab.lab.apiserver.streams.exchange import ClientGone, write_status
from kalab.lab.apiserver.streams.logs import peer_closed, serve_log
from kalab.lab.apiserver.streams.proxy import serve_proxy
from kalab.lab.apiserver.streams.remotecommand import exit_status, serve_exec
from kalab.lab.apiserver.streams.wsstream import (
    CLOSE_STREAM,
    ERROR,
    PROTOCOLS,
    RESIZE,
    STDERR,
    STDIN,
    STDOUT,
    ChannelProtocol,
    Refused,
    WebSocket,
    negotiate,
    write_switching_protocols,
)

__all__ = [
    "CLOSE_STREAM",
    "ERROR",
    "PROTOCOLS",
    "RESIZE",
    "STDERR",
    "STDIN",
    "STDOUT",
    "ChannelProtocol",
    "ClientGone",
    "Refused",
    "WebSocket",
    "exit_status",
    "negotiate",
    "peer_closed",
    "serve_exec",
    "serve_log",
    "serve_proxy",
    "write_status",
    "write_switching_protocols",
]
