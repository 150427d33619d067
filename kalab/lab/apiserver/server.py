"""The lab's HTTPS API server: kube-apiserver's REST surface over the Store, for kubectl and the `kubernetes` client.

`serve()` writes fresh TLS material, a bearer token and a kubeconfig (all 0600) under the state directory, listens
on loopback only and answers in a thread per connection (the TLS handshake happens in that thread, so a slow client
never holds up the accept loop). Everything but the health endpoints needs the bearer token.

Routing covers the core group (`/api/v1`) and named groups (`/apis/{group}/{version}`), namespaced and
cluster-scoped resources, collections, objects and subresources (status, scale, and pods' log/exec/proxy, which
`kalab.lab.apiserver.streams` speaks), plus `/watch/` paths. Verbs: get, list (selectors, limit/continue), watch
(chunked JSON lines, resumable from a resourceVersion, bookmarks), create, update, patch (JSON, merge, strategic,
server-side apply), delete and deletecollection, each with dryRun=All (admitted like the real write, stored
nowhere). Every write records its field manager in managedFields (`fieldmanager`); deletes honour finalizers and
propagation policies, and a deleted namespace terminates through its finalizer (`namespaces`). GET answers JSON,
a Table or PartialObjectMetadata, as the Accept header asks.

The parts, as kube-apiserver splits them: `transport` speaks HTTP/1.1 (h11, a thread per TLS connection),
`negotiation` reads Accept and Content-Type, `routing` turns a path into the request a verb works from, `handlers`
has one handler per verb (and watch), `strategies` the per-kind rules of writes, and `endpoints` authenticates
and dispatches; this module wires them together and serves.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from kalab.lab.apiserver import transport
from kalab.lab.apiserver.crds import CrdController, start_crd_controller
from kalab.lab.apiserver.endpoints import Api, Endpoints, error_page
from kalab.lab.apiserver.hooks import PodHooks
from kalab.lab.apiserver.kubeconfig import write_kubeconfig
from kalab.lab.apiserver.store import Store
from kalab.lab.apiserver.tls import make_tls, new_token
from kalab.lab.context import LabContext

_log = logging.getLogger(__name__)

IDLE_TIMEOUT = 120.0  # an idle keep-alive connection is closed after this long
HANDSHAKE_TIMEOUT = 10.0


@dataclass
class RunningServer:
    """A serving API server: where it is, how to reach it, and how to stop it."""

    url: str
    port: int
    token: str
    ca_file: Path
    kubeconfig: Path
    host: str
    _server: transport.Server = field(repr=False)
    _api: Api = field(repr=False)
    _crds: CrdController | None = field(default=None, repr=False)

    @property
    def bound_address(self) -> tuple[str, int]:
        """The listening socket's own address (what the kernel bound), for checks that nothing listens wider."""
        return self._server.address

    def shutdown(self) -> None:
        """Stop accepting, end every watch and connection, and stop the CRD controller. Idempotent."""
        self._api.handlers.stopping.set()
        self._server.shutdown()
        self._api.handlers.finish_terminating()
        if self._crds is not None:
            self._crds.stop()
            self._crds = None

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.shutdown()


def _tls_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(cert_file), str(key_file))
    context.set_alpn_protocols(["http/1.1"])  # no HTTP/2 here
    return context


def serve(
    store: Store,
    hooks: PodHooks | None,
    state_dir: Path,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    crd_controller: bool = True,
    bookmark_interval: float = 30.0,
    namespace_grace: float = 1.0,
    kubeconfig_extensions: dict[str, dict[str, Any]] | None = None,
    listener: socket.socket | None = None,
) -> RunningServer:
    """Serve `store` over HTTPS on host:port (loopback only; port 0 picks a free one) until `.shutdown()`.

    Writes `pki/` (CA and server certificate) and `kubeconfig` under `state_dir`, all 0600. With `crd_controller`
    (the default) it also starts the controller that serves CRDs found in the store and marks them Established.
    A namespace deleted through the API stays Terminating for `namespace_grace` seconds before it and its content
    are deleted (0: at once). A `listener` (a socket already listening on a loopback address) replaces host:port.
    """
    if not isinstance(ipaddress.ip_address(host), ipaddress.IPv4Address) or not ipaddress.ip_address(host).is_loopback:
        raise ValueError(f"the lab API server listens on loopback only, not {host}")
    if listener is not None:
        host = str(listener.getsockname()[0])
        if not ipaddress.ip_address(host).is_loopback:
            raise ValueError(f"the lab API server listens on loopback only, not {host}")
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    material = make_tls(state_dir / "pki", host)
    token = new_token()
    api = Api(store, hooks, token, bookmark_interval, namespace_grace)
    if listener is None:
        listener = socket.create_server((host, port), backlog=128)
    server = transport.Server(
        listener,
        Endpoints.application(api),
        error_page,
        _tls_context(material.cert_file, material.key_file),
        idle_timeout=IDLE_TIMEOUT,
        handshake_timeout=HANDSHAKE_TIMEOUT,
        name=f"kalab-apiserver-{listener.getsockname()[1]}",
    )
    bound_port = server.address[1]
    api.address = f"{host}:{bound_port}"
    url = f"https://{host}:{bound_port}"
    kubeconfig = write_kubeconfig(
        state_dir / "kubeconfig", url, token, material.ca_pem, extensions=kubeconfig_extensions
    )
    crds = start_crd_controller(LabContext(store=store, state_dir=state_dir)) if crd_controller else None
    server.start()
    return RunningServer(
        url=url,
        port=bound_port,
        token=token,
        ca_file=material.ca_file,
        kubeconfig=kubeconfig,
        host=host,
        _server=server,
        _api=api,
        _crds=crds,
    )
