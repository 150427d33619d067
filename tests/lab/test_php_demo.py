"""The php demo answers the seed's page with its own pod IP, served from a namespace and fetched from another."""

from __future__ import annotations

from pathlib import Path

import pytest

from kalab.lab.images.php_demo import GREETING
from tests.lab.nets import curl, demo_server, linked_pair
from tests.support.markers import needs_root_tools


def test_greeting_is_the_seed_text() -> None:
    assert GREETING == "Hello!<br>Welcome to RedHat Developer<br>Enjoy all of the ad-free articles<br>"


@needs_root_tools("ip", "curl")
def test_page_is_the_seed_text_plus_the_pod_ip(tmp_path: Path) -> None:
    with linked_pair() as (client, pod), demo_server(pod.name, tmp_path / "access.log") as server:
        got = curl(client.name, f"http://{pod.ip}/")
        assert got.returncode == 0, got.stderr
        assert got.stdout == GREETING + pod.ip  # no trailing newline, exactly like the PHP page

        index = curl(client.name, f"http://{pod.ip}/index.php", "-i")  # read as text, so CRLF arrives as LF
        assert index.stdout.startswith("HTTP/1.1 200 OK\n")
        assert "Connection: close\n" in index.stdout
        assert f"Content-Length: {len(GREETING + pod.ip)}\n" in index.stdout

        missing = curl(client.name, f"http://{pod.ip}/nope", "-o", "/dev/null", "-w", "%{http_code}")
        assert missing.stdout == "404"
        head = curl(client.name, f"http://{pod.ip}/", "-I")
        assert head.stdout.startswith("HTTP/1.1 200 OK") and "Hello" not in head.stdout
        posted = curl(client.name, f"http://{pod.ip}/", "--data-binary", "x" * 5000)  # curl sends Expect: 100
        assert posted.stdout == GREETING + pod.ip

        server.terminate()
        assert server.wait(timeout=10) == 0  # SIGTERM is a clean stop
    log = (tmp_path / "access.log").read_text().splitlines()
    requests = [line for line in log if '"' in line]
    assert len(requests) == 5
    assert requests[0].startswith(f"{client.ip} - - [")
    assert requests[0].endswith(f'"GET / HTTP/1.1" 200 {len(GREETING + pod.ip)}')
    assert '"GET /nope HTTP/1.1" 404' in requests[2]


@needs_root_tools("ip", "curl")
@pytest.mark.parametrize("how", ["flag", "env"])
def test_ip_can_be_given_explicitly(tmp_path: Path, how: str) -> None:
    args, env = (("--ip", "10.254.9.9"), None) if how == "flag" else ((), {"POD_IP": "10.254.9.9"})
    with (
        linked_pair() as (client, pod),
        demo_server(pod.name, tmp_path / "access.log", "--port", "8080", *args, env=env),
    ):
        got = curl(client.name, f"http://{pod.ip}:8080/")
        assert got.stdout == GREETING + "10.254.9.9"
