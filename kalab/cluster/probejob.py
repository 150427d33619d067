"""Launching the prober (kalab.cluster.prober) as a child process where a cluster's clients live: this machine, or
the place a client-site plugin names (for the lab, its bastion namespace: see kalab.lab.site and kalab.lab.bastion).
This module only runs the place's command prefix; it never knows how a place is entered.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import IO, TYPE_CHECKING

from kalab.model.clientsite import THIS_MACHINE, ClientPlace
from kalab.model.errors import KalabError

if TYPE_CHECKING:
    import pandas as pd  # imported lazily: the prober itself must start fast and stay light
from kalab.cluster.prober import parse_url
from kalab.model.probes import check_limits, read_csv


class ProbeJob:
    """A running prober (see `start_probe`); `result()` waits and reads its CSV."""

    def __init__(self, place: ClientPlace, argv: list[str], workdir: Path, limit: float) -> None:
        self.where = place.where
        self.workdir = workdir
        self.csv = workdir / "probe.csv"
        self.limit = limit
        self._lines: list[str] = []
        self._started = threading.Event()
        self.started_at: float | None = None
        self._stderr = (workdir / "stderr.txt").open("w+")
        env = dict(os.environ)
        # The prober imports this package; make that work whatever the child's working directory.
        package_root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH", "")) if p)
        self.popen = subprocess.Popen(
            place.command([*argv, "--out", str(self.csv)]),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=env,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, args=(self.popen.stdout,), daemon=True)
        self._reader.start()

    def _read(self, stream: IO[str] | None) -> None:
        assert stream is not None
        for line in stream:
            self._lines.append(line)
            if line.startswith('{"started"'):
                with contextlib.suppress(ValueError, KeyError):
                    self.started_at = float(json.loads(line)["started"])
                self._started.set()
        self._started.set()  # also on exit, so a waiter never hangs on a prober that failed early

    def wait_started(self, timeout: float = 15.0) -> float:
        """Block until the first request is about to go out; return its planned send time (unix seconds)."""
        if not self._started.wait(timeout) or self.started_at is None:
            self.result()  # raises the prober's own error if it failed
            raise KalabError(f"The prober on {self.where} did not start within {timeout:g} s.")
        return self.started_at

    def stop(self) -> None:
        """Kill the prober (our own child, by PID) and remove its files."""
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(timeout=10)
        self._cleanup()

    def result(self) -> pd.DataFrame:
        """Wait for the prober to finish; its CSV as a frame, with the summary in `frame.attrs["summary"]`."""
        try:
            try:
                code = self.popen.wait(timeout=self.limit)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=10)
                raise KalabError(f"The prober on {self.where} ran past {self.limit:g} s and was killed.") from None
            self._reader.join(timeout=10)
            if code != 0:
                self._stderr.seek(0)
                lines = [ln.strip() for ln in self._stderr.read().splitlines() if ln.strip()]
                reason = lines[-1].removeprefix("error: ") if lines else f"exit status {code}"
                raise KalabError(f"The prober on {self.where} failed: {reason.rstrip('.')}.")
            frame = read_csv(self.csv)
            with contextlib.suppress(ValueError, IndexError):
                frame.attrs["summary"] = json.loads(self._lines[-1])
            return frame
        finally:
            self._cleanup()

    def _cleanup(self) -> None:
        self._stderr.close()
        shutil.rmtree(self.workdir, ignore_errors=True)


def start_probe(
    url: str,
    duration: float,
    rate: float,
    timeout: float = 1.0,
    place: ClientPlace = THIS_MACHINE,
    python: str | None = None,
) -> ProbeJob:
    """Start the prober where `place` says (this machine, or e.g. the lab's bastion) and return at once."""
    check_limits(duration, rate, timeout)
    parse_url(url, resolve=False)  # names are resolved where the prober runs, where the client's view applies
    workdir = Path(tempfile.mkdtemp(prefix="kalab-probe-"))
    argv = [
        python or sys.executable,
        "-m",
        "kalab.cluster.prober",
        url,
        "--for",
        repr(float(duration)),
        "--rate",
        repr(float(rate)),
        "--timeout",
        repr(float(timeout)),
    ]
    try:
        return ProbeJob(place, argv, workdir, limit=duration + timeout + 60.0)
    except OSError as err:
        shutil.rmtree(workdir, ignore_errors=True)
        raise KalabError(f"The prober could not be started on {place.where}: {err.strerror or err}.") from err


def probe_timeline(
    url: str,
    duration: float,
    rate: float,
    timeout: float = 1.0,
    place: ClientPlace = THIS_MACHINE,
    python: str | None = None,
) -> pd.DataFrame:
    """Probe `url` from `place` and return the timeline (summary in `frame.attrs["summary"]`)."""
    return start_probe(url, duration, rate, timeout, place, python).result()
