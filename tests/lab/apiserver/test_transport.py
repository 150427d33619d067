"""The API server's HTTP layer (kalab.lab.apiserver.transport) as clients meet it: keep-alive, pipelining, malformed
and unknown requests answered with a Status, and a watch whose client leaves giving its thread back."""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import threading
from typing import Any

from kalab.lab.apiserver.server import RunningServer
from tests.lab.apiserver.api_kit import raw_request
from tests.support.waiting import wait_for


def tls_socket(server: RunningServer) -> ssl.SSLSocket:
    context = ssl.create_default_context(cafile=str(server.ca_file))
    raw = socket.create_connection((server.host, server.port), timeout=10)
    return context.wrap_socket(raw, server_hostname=server.host)


def read_response(reader: Any) -> tuple[int, dict[str, str], bytes]:
    """One Content-Length framed response from a buffered reader over the connection."""
    status_line = reader.readline().decode("latin-1")
    status = int(status_line.split()[1])
    headers: dict[str, str] = {}
    while (line := reader.readline().decode("latin-1").rstrip("\r\n")) != "":
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, reader.read(int(headers.get("content-length", "0")))


def connection_threads(server: RunningServer) -> int:
    return sum(t.name == f"kalab-apiserver-{server.port}-conn" for t in threading.enumerate())


def test_one_connection_serves_several_requests(server: RunningServer) -> None:
    context = ssl.create_default_context(cafile=str(server.ca_file))
    conn = http.client.HTTPSConnection(server.host, server.port, context=context, timeout=10)
    auth = {"Authorization": f"Bearer {server.token}"}
    try:
        conn.request("GET", "/api/v1/namespaces/demo", headers=auth)
        first = conn.getresponse()
        assert first.status == 200 and json.loads(first.read())["metadata"]["name"] == "demo"
        sock = conn.sock
        for path in ("/version", "/api/v1/namespaces", "/api/v1/namespaces/nope"):
            conn.request("GET", path, headers=auth)
            answer = conn.getresponse()
            answer.read()
            assert answer.status == (404 if path.endswith("nope") else 200)
            assert conn.sock is sock  # kept alive: no new connection was made
    finally:
        conn.close()


def test_pipelined_requests_are_answered_in_order(server: RunningServer) -> None:
    auth = f"Authorization: Bearer {server.token}\r\n"
    requests = b"".join(
        f"GET {path} HTTP/1.1\r\nHost: {server.host}\r\n{auth}\r\n".encode()
        for path in ("/api/v1/namespaces/demo", "/api/v1/namespaces/default", "/healthz")
    )
    with tls_socket(server) as sock:
        sock.sendall(requests)  # all three before reading any answer
        reader = sock.makefile("rb")
        names = [json.loads(read_response(reader)[2])["metadata"]["name"] for _ in range(2)]
        assert names == ["demo", "default"]
        assert read_response(reader)[::2] == (200, b"ok")


def test_a_malformed_request_line_gets_a_400_status(server: RunningServer) -> None:
    with tls_socket(server) as sock:
        sock.sendall(b"NOT A REQUEST\r\n\r\n")
        status, headers, body = read_response(sock.makefile("rb"))
    assert status == 400
    assert headers["content-type"] == "application/json" and headers["connection"] == "close"
    doc = json.loads(body)
    assert (doc["kind"], doc["status"], doc["reason"], doc["code"]) == ("Status", "Failure", "BadRequest", 400)


def test_an_unknown_method_gets_a_405_status(server: RunningServer) -> None:
    answer = raw_request(server, "BREW", "/api/v1/namespaces/demo")
    assert answer.status == 405 and answer.headers["content-type"] == "application/json"
    assert answer.json()["reason"] == "MethodNotAllowed"


def test_an_http_1_0_client_gets_its_answer_and_the_connection_closes(server: RunningServer) -> None:
    with tls_socket(server) as sock:
        sock.sendall(f"GET /api/v1/namespaces/demo HTTP/1.0\r\nAuthorization: Bearer {server.token}\r\n\r\n".encode())
        reader = sock.makefile("rb")
        status, _, body = read_response(reader)
        assert status == 200 and json.loads(body)["metadata"]["name"] == "demo"
        assert reader.read() == b""  # the server closed the connection


def test_a_client_leaving_a_watch_frees_its_thread(server: RunningServer) -> None:
    before = connection_threads(server)
    sock = tls_socket(server)
    auth = f"Authorization: Bearer {server.token}\r\n"
    sock.sendall(f"GET /api/v1/namespaces?watch=true HTTP/1.1\r\nHost: x\r\n{auth}\r\n".encode())
    reader = sock.makefile("rb")
    assert reader.readline().startswith(b"HTTP/1.1 200")
    while reader.readline() not in (b"\r\n", b""):
        pass
    assert b'"ADDED"' in reader.readline() + reader.readline()  # a chunk size line, then the first event
    assert connection_threads(server) == before + 1
    reader.close()
    sock.close()
    wait_for(lambda: connection_threads(server) == before, timeout=10, what="the watch's thread to end")
