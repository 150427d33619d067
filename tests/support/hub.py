"""A real JupyterHub for tests of hosting a class: the hub runs as root, each attendee's server as their own user.

It is the set-up FACTS §9 describes (The Littlest JupyterHub's LocalProcessSpawner): PyPI's `jupyterhub` with
npm's `configurable-http-proxy`, every single-user server started as the attendee's Unix user. The test drives
it as a trainer's script would, through the hub's REST API with a service token, and runs notebook cells in each
attendee's kernel over the Jupyter server's kernel websocket, as JupyterLab's "Run All" does.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import websocket  # websocket-client, which jupyter_server already depends on

CHP_DIR = Path("/var/tmp/kalab-test-chp")


def configurable_http_proxy() -> Path:
    """npm's configurable-http-proxy, installed once into a cache folder (the hub starts it)."""
    chp = CHP_DIR / "node_modules" / ".bin" / "configurable-http-proxy"
    if not chp.exists():
        CHP_DIR.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["npm", "install", "--silent", "--no-audit", "--no-fund", "configurable-http-proxy@5"],
            cwd=CHP_DIR,
            check=True,
            timeout=300,
            capture_output=True,
        )
    return chp


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Kernel:
    """One kernel of an attendee's server, driven over its websocket like JupyterLab does."""

    ws: websocket.WebSocket
    shutdown: Callable[[], None]  # what JupyterLab's "Shut Down Kernel" does
    session: str = field(default_factory=lambda: uuid.uuid4().hex)

    def execute(self, code: str, timeout: float = 300.0) -> tuple[str, str]:
        """Run `code`; returns (status, text): status "ok" or "error", text the streams or the error's name/value."""
        msg_id = uuid.uuid4().hex
        header = {
            "msg_id": msg_id,
            "msg_type": "execute_request",
            "session": self.session,
            "username": "trainer",
            "version": "5.3",
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        content = {
            "code": code,
            "silent": False,
            "store_history": True,
            "user_expressions": {},
            "allow_stdin": False,
            "stop_on_error": True,
        }
        message = {"header": header, "parent_header": {}, "metadata": {}, "content": content, "channel": "shell"}
        self.ws.send(json.dumps(message))
        deadline = time.monotonic() + timeout
        text: list[str] = []
        status, idle = "", False
        while not (status and idle):
            self.ws.settimeout(max(0.1, deadline - time.monotonic()))
            if time.monotonic() > deadline:
                raise TimeoutError(f"a cell ran past {timeout:g} s: {code[:80]!r}")
            reply = json.loads(self.ws.recv())
            if reply.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, body = reply["header"]["msg_type"], reply.get("content", {})
            if kind == "stream":
                text.append(body.get("text", ""))
            elif kind == "error":
                text.append(f"{body.get('ename')}: {body.get('evalue')}")
            elif kind == "execute_reply":
                status = body.get("status", "error")
            elif kind == "status" and body.get("execution_state") == "idle":
                idle = True
        return status, "".join(text)

    def run_notebook(self, notebook: Path) -> str | None:
        """Run every code cell of `notebook` in order, like "Run All"; None, or where and why the first one failed."""
        cells = json.loads(notebook.read_text())["cells"]
        for index, cell in enumerate(c for c in cells if c["cell_type"] == "code"):
            status, text = self.execute("".join(cell["source"]))
            if status != "ok":
                return f"{notebook.stem} code cell {index}: {text.strip()[-500:]}"
        return None

    def close(self, shutdown: bool = True) -> None:
        """Disconnect, and (by default) shut the kernel down as an attendee closing the notebook would."""
        self.ws.close()
        if shutdown:
            self.shutdown()


@dataclass
class Hub:
    """A running hub; `api()` calls the hub's REST API, `server_api()` an attendee's Jupyter server."""

    url: str
    token: str
    process: subprocess.Popen[bytes]
    workdir: Path

    def _call(self, method: str, url: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("Authorization", f"token {self.token}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=60) as response:
            raw = response.read()
        return json.loads(raw) if raw else None

    def api(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        return self._call(method, f"{self.url}/hub/api{path}", body)

    def server_api(self, user: str, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        return self._call(method, f"{self.url}/user/{user}/api{path}", body)

    def start_server(self, user: str, timeout: float = 120.0) -> None:
        """Create the hub user and spawn their server (as their Unix user); return once it answers."""
        self.api("POST", f"/users/{user}")
        with contextlib.suppress(urllib.error.HTTPError):  # 202 Accepted while spawning
            self.api("POST", f"/users/{user}/server")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            server = (self.api("GET", f"/users/{user}").get("servers") or {}).get("")
            if server and server.get("ready"):
                return
            if self.process.poll() is not None:
                raise RuntimeError(f"the hub exited; see {self.workdir / 'hub.log'}")
            time.sleep(0.2)
        raise TimeoutError(f"{user}'s server was not ready within {timeout:g} s; see {self.workdir / 'hub.log'}")

    def server_pid(self, user: str) -> int | None:
        """The PID of the user's single-user server (LocalProcessSpawner keeps it in the hub's state)."""
        state = (self.api("GET", f"/users/{user}?include_stopped_servers").get("servers") or {}).get("", {})
        pid = (state.get("state") or {}).get("pid")
        return int(pid) if pid else None

    def kernel(self, user: str) -> Kernel:
        """Start a python3 kernel in the user's server and connect to its channels."""
        started = self.server_api(user, "POST", "/kernels", {"name": "python3"})
        ws_url = self.url.replace("http://", "ws://") + f"/user/{user}/api/kernels/{started['id']}/channels"
        ws = websocket.create_connection(ws_url, header=[f"Authorization: token {self.token}"], timeout=60)
        return Kernel(ws, lambda: self.server_api(user, "DELETE", f"/kernels/{started['id']}"))

    def stop_server(self, user: str, timeout: float = 60.0) -> None:
        with contextlib.suppress(urllib.error.HTTPError):
            self.api("DELETE", f"/users/{user}/server")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not (self.api("GET", f"/users/{user}").get("servers") or {}):
                return
            time.sleep(0.2)
        raise TimeoutError(f"{user}'s server did not stop within {timeout:g} s")


def _hub_config(venv: Path, chp: Path, workdir: Path, ports: tuple[int, int, int], token: str) -> str:
    public, hub, proxy_api = ports
    scopes = ["admin:users", "admin:servers", "access:servers", "list:users", "read:users"]
    return f"""
c = get_config()  # noqa: F821
c.JupyterHub.bind_url = "http://127.0.0.1:{public}"
c.JupyterHub.hub_bind_url = "http://127.0.0.1:{hub}"
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_api}"
c.ConfigurableHTTPProxy.command = [{str(chp)!r}]
c.JupyterHub.db_url = "sqlite:///{workdir}/hub.sqlite"
c.JupyterHub.cookie_secret_file = "{workdir}/cookie_secret"
c.JupyterHub.services = [{{"name": "trainer", "api_token": {token!r}}}]
c.JupyterHub.load_roles = [{{"name": "trainer", "scopes": {scopes!r}, "services": ["trainer"]}}]
c.Authenticator.allow_all = True
c.Spawner.cmd = ["{venv}/bin/jupyterhub-singleuser"]
c.Spawner.environment = {{"PATH": "{venv}/bin:/usr/local/bin:/usr/bin:/bin"}}
c.Spawner.notebook_dir = "~"
c.Spawner.default_url = "/lab"
c.Spawner.start_timeout = 120
c.Spawner.http_timeout = 120
"""


@contextlib.contextmanager
def running_hub(venv: Path) -> Iterator[Hub]:
    """JupyterHub from `venv` (which also serves the attendees), on loopback ports; stopped with its servers."""
    chp = configurable_http_proxy()
    workdir = Path(tempfile.mkdtemp(prefix="kalab-hub-"))
    token = secrets.token_hex(32)
    ports = (_free_port(), _free_port(), _free_port())
    (workdir / "jupyterhub_config.py").write_text(_hub_config(venv, chp, workdir, ports, token))
    with open(workdir / "hub.log", "wb") as log:
        process = subprocess.Popen(
            [str(venv / "bin" / "jupyterhub"), "-f", str(workdir / "jupyterhub_config.py")],
            cwd=workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PATH": f"{venv}/bin:{os.environ.get('PATH', '/usr/bin:/bin')}"},
        )
    hub = Hub(f"http://127.0.0.1:{ports[0]}", token, process, workdir)
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(OSError, urllib.error.URLError):
                hub.api("GET", "/")
                break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"JupyterHub did not start: {(workdir / 'hub.log').read_text()[-2000:]}")
            time.sleep(0.2)
        yield hub
    finally:
        _stop(process, workdir)
        shutil.rmtree(workdir, ignore_errors=True)


def _stop(process: subprocess.Popen[bytes], workdir: Path) -> None:
    """SIGTERM the hub (our child): it stops the attendees' servers and its proxy; then make sure the proxy is gone."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
    pid_file = workdir / "jupyterhub-proxy.pid"
    with contextlib.suppress(OSError, ValueError):
        pid = int(pid_file.read_text().strip())
        if b"configurable-http-proxy" in Path(f"/proc/{pid}/cmdline").read_bytes():
            os.kill(pid, signal.SIGTERM)  # the proxy the hub started and recorded, by its PID
