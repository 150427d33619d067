"""JupyterLab served exactly as `make lab` serves it, on a copy of the notebooks, stopped the way Ctrl-C stops it."""

from __future__ import annotations

import json
import os
import pty
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.labs import processes_mentioning
from tests.support.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
LAB = "t-browser"  # the embedded lab the notebooks attach to, through KALAB_LAB in JupyterLab's environment


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _as_terminal_child() -> None:
    """In the child: Ctrl-C's default effect, as in a terminal (a shell running pytest in the background may
    have set SIGINT to ignored, which would otherwise be inherited)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@dataclass
class LabServer:
    """A running `make serve-lab`: its URL, token, the notebooks it serves and its log."""

    url: str
    token: str
    notebooks: Path
    runtime: Path
    log: Path
    process: subprocess.Popen[bytes]

    def api(self, path: str, method: str = "GET") -> Any:
        """One call to the server's REST API (on loopback, with the token); the decoded JSON, or None."""
        request = urllib.request.Request(
            f"{self.url}{path}", method=method, headers={"Authorization": f"token {self.token}"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            body = response.read()
        return json.loads(body) if body else None

    def page_url(self, notebook: str) -> str:
        """The notebook opened alone in JupyterLab (`reset` drops the tabs an earlier page left open)."""
        return f"{self.url}/lab/tree/{urllib.parse.quote(notebook)}?reset&token={self.token}"

    def saved(self, notebook: str) -> dict[str, Any]:
        """The notebook as JupyterLab last saved it."""
        content: dict[str, Any] = self.api(f"/api/contents/{urllib.parse.quote(notebook)}?content=1")["content"]
        return content

    def session(self, notebook: str) -> dict[str, Any] | None:
        sessions = self.api("/api/sessions")
        return next((s for s in sessions if s["path"] == notebook), None)

    def kernel_idle(self, notebook: str) -> bool:
        """The notebook has a kernel, started and waiting for code."""
        found = self.session(notebook)
        return found is not None and found["kernel"]["execution_state"] == "idle"

    def shut_down_kernel(self, notebook: str) -> None:
        """End the notebook's kernel, as File → Close and Shut Down Notebook would."""
        found = self.session(notebook)
        if found is not None:
            self.api(f"/api/sessions/{found['id']}", method="DELETE")
        wait_for(lambda: self.session(notebook) is None, timeout=30, what=f"the kernel of {notebook} to end")

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def responds(self) -> bool:
        try:
            self.api("/api/status")
        except (urllib.error.URLError, OSError):
            return False
        return True

    def kernels(self) -> list[int]:
        """The PIDs of this server's kernels: their command lines name a connection file in its runtime directory."""
        return processes_mentioning(str(self.runtime))

    def interrupt(self, timeout: float = 60) -> int:
        """Ctrl-C as a terminal sends it (SIGINT to the whole foreground process group); the exit status."""
        os.killpg(self.process.pid, signal.SIGINT)
        return self.process.wait(timeout=timeout)


@contextmanager
def served_lab(work: Path, lab_name: str, bin_dir: Path | None = None) -> Iterator[LabServer]:
    """`make serve-lab` (what `make lab` runs after its set-up) on a copy of notebooks/ under `work`.

    The embedded lab is named by KALAB_LAB, as an attendee names theirs; the caller takes it down. JupyterLab's
    user settings and workspaces live under `work`, so neither a developer's settings nor an earlier run leak in.
    Its standard input is a terminal, so Ctrl-C takes the same path as for a person at a shell.
    """
    notebooks = work / "notebooks"
    shutil.copytree(ROOT / "notebooks", notebooks)
    runtime = work / "runtime"
    port, token = free_port(), secrets.token_hex(16)
    env = {
        **os.environ,
        "KALAB_LAB": lab_name,
        "JUPYTER_PORT": str(port),
        "JUPYTER_PORT_RETRIES": "0",  # fail on a taken port rather than serve on another one
        "JUPYTER_TOKEN": token,
        "JUPYTER_RUNTIME_DIR": str(runtime),  # kernels' connection files: finds them, and proves they are gone
        "JUPYTERLAB_SETTINGS_DIR": str(work / "user-settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(work / "workspaces"),
    }
    bin_dir = bin_dir or Path(sys.executable).parent
    argv = ["make", "-s", "-C", str(ROOT), "serve-lab", f"BIN={bin_dir}", f"NOTEBOOKS={notebooks}"]
    log = work / "jupyterlab.log"
    controller, terminal = pty.openpty()
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv,
            stdin=terminal,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            preexec_fn=_as_terminal_child,
        )
    os.close(terminal)
    server = LabServer(f"http://127.0.0.1:{port}", token, notebooks, runtime, log, process)
    try:

        def up() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"`make serve-lab` ended with {process.returncode}:\n{server.log_text()[-3000:]}")
            return server.responds()

        wait_for(up, timeout=240, what="JupyterLab to serve (after `kalab lab up`)", interval=0.2)
        yield server
    finally:
        # A test may have pressed Ctrl-C already (and asserted on what it did); this only makes sure nothing stays.
        if process.poll() is None:
            try:
                server.interrupt()
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)
        os.close(controller)
        for pid in server.kernels():
            os.kill(pid, signal.SIGKILL)
