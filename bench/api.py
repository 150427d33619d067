"""How fast the lab's API server answers the official Python client, against a trivial TLS server in the same run.

    python bench/api.py [--requests 200]

Starts a lab (under a temporary KALAB_HOME), then times GET of a namespace, LIST of namespaces, and CREATE+DELETE
of a ConfigMap through the `kubernetes` client, and GETs of a trivial HTTPS server (http.server behind TLS,
answering `{}`) and of the lab's own HTTP layer answering `{}` (h11 over TLS, no routing or storage) through
urllib3 (what the client uses underneath), on the same machine. Prints p50/p90 in ms and
the lab's ratio to the trivial server; writes bench/results/api.json.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import ssl
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import urllib3
from kubernetes import client, config

from kalab.lab import control
from kalab.lab.apiserver import transport
from kalab.lab.apiserver.tls import TlsMaterial, make_tls

ROOT = Path(__file__).resolve().parents[1]


def timed(call: Callable[[], object], count: int) -> dict[str, float]:
    call()  # a warm connection, as a client in a notebook has
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return {"p50_ms": round(statistics.median(samples), 2), "p90_ms": round(samples[int(len(samples) * 0.9)], 2)}


class _Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        # The whole response in one write: the least a server can do for a request.
        self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _tls(folder: Path) -> tuple[TlsMaterial, ssl.SSLContext]:
    """A CA and server certificate for 127.0.0.1, and the server context that presents them."""
    material = make_tls(folder, "127.0.0.1")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(material.cert_file), str(material.key_file))
    return material, context


def trivial_server(count: int, folder: Path) -> dict[str, float]:
    """GET of a trivial HTTPS server on loopback: the floor any Python server on TLS could reach here."""
    material, context = _tls(folder / "pki")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        pool = urllib3.PoolManager(ca_certs=str(material.ca_file))
        url = f"https://127.0.0.1:{server.server_address[1]}/"
        return timed(lambda: pool.request("GET", url), count)
    finally:
        server.shutdown()
        server.server_close()


def transport_server(count: int, folder: Path) -> dict[str, float]:
    """GET of the lab's own HTTP layer (kalab.lab.apiserver.transport, h11 over TLS) answering `{}`: what the
    protocol handling costs without routing or storage, next to the trivial http.server above."""
    material, context = _tls(folder / "pki-transport")

    def answer(exchange: transport.Exchange) -> None:
        exchange.respond(200, [("Content-Type", "application/json")], b"{}")

    server = transport.Server(
        socket.create_server(("127.0.0.1", 0)),
        answer,
        lambda status, reason: ([], reason.encode()),
        context,
        idle_timeout=60,
        handshake_timeout=10,
    )
    server.start()
    try:
        pool = urllib3.PoolManager(ca_certs=str(material.ca_file))
        url = f"https://127.0.0.1:{server.address[1]}/"
        return timed(lambda: pool.request("GET", url), count)
    finally:
        server.shutdown()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "api.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kalab-bench-api-") as tmp:
        os.environ[control.HOME_ENV] = tmp
        info = control.up("bench-api")
        try:
            api = config.new_client_from_config(str(info.kubeconfig))  # type: ignore[no-untyped-call]
            core = client.CoreV1Api(api)
            body = {"metadata": {"name": "bench"}, "data": {"a": "b"}}

            def create_delete() -> None:
                core.create_namespaced_config_map("default", body)
                core.delete_namespaced_config_map("bench", "default")

            lab = {
                "get": timed(lambda: core.read_namespace("default"), args.requests),
                "list": timed(core.list_namespace, args.requests),
                "create_delete": timed(create_delete, args.requests // 2),
            }
        finally:
            control.down("bench-api")
        floor = trivial_server(args.requests, Path(tmp))
        layer = transport_server(args.requests, Path(tmp))
    result = {"requests": args.requests, "lab": lab, "trivial_tls_server_get": floor, "http_layer_get": layer}
    result["get_ratio_to_trivial"] = round(lab["get"]["p50_ms"] / floor["p50_ms"], 2)
    for what, figures in {**lab, "trivial TLS server GET": floor, "lab's HTTP layer GET": layer}.items():
        print(f"{what:<24} p50 {figures['p50_ms']:6.2f} ms   p90 {figures['p90_ms']:6.2f} ms")
    print(f"lab GET / trivial GET: {result['get_ratio_to_trivial']:.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
