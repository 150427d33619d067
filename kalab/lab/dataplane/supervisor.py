"""Run the lab's programs the way a kubelet runs containers: in a network namespace, with logs, restarts and stops.

Why it is built this way:
- A program runs as `ip netns exec <ns> <argv>`; `ip` execs the program, so the PID we record is the program's own.
- Each program gets its own session (setsid), so its PID is also its process group and session ID. When a program
  ends (by itself or because we stopped it) we SIGKILL whatever is left in its group while the program is still an
  unreaped zombie: the zombie pins the group ID, so that signal cannot reach anybody else. This is what a container
  runtime does to a container's cgroup when its main process exits, and it is why nothing outlives a stop.
- If the supervising process dies, the kernel SIGKILLs each program (PR_SET_PDEATHSIG, set in the child between fork
  and exec, see children.py; the child also checks that its parent did not die before that). The kernel ties that
  signal to the *thread* that forked, so every fork happens on the supervisor's one long-lived loop thread.
- Descendants of a program are not covered by the death signal, so every started PID is recorded on disk with its
  start time from /proc/<pid>/stat and the boot ID; records.py reads them back after a crash and kills exactly
  those sessions (`reap_recorded`) — never by name, and never a reused PID.
- One thread per supervisor multiplexes everything (pidfds for exits, pipes for logs, timers for backoff and grace
  periods), so dozens of programs cost one thread, and all state changes happen in one place.
This module stays whole (some 500 lines) because it is one thing, that loop and the state it owns: split, the
one-thread rule would be spread over several files. What it is given and reports lives in processes.py, when to
restart in restart_policy.py, how output becomes a log in output_log.py, and the PID records in records.py.
"""

from __future__ import annotations

import atexit
import contextlib
import heapq
import itertools
import logging
import os
import selectors
import signal as _signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from kalab.lab.dataplane.children import die_with_parent
from kalab.lab.dataplane.output_log import OutputLog, Stamper, safe_filename
from kalab.lab.dataplane.processes import ProcessSpec, ProcessState, ProcessStatus, Termination
from kalab.lab.dataplane.procfs import boot_id, read_stat
from kalab.lab.dataplane.records import ProcessRecord, rfc3339, write_record
from kalab.lab.dataplane.restart_policy import wants_restart
from kalab.model.errors import KalabError

_T = TypeVar("_T")
# What a minimal container image sets; callers add the rest (HOSTNAME, POD_NAME, ...) through ProcessSpec.env.
_BASE_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
_READ_CHUNK = 65536
_log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------------------------
# Internal bookkeeping (touched only on the loop thread, under the condition's lock)


class _Timer:
    __slots__ = ("callback", "cancelled")

    def __init__(self, callback: Callable[[], None]) -> None:
        self.callback = callback
        self.cancelled = False


class _Run:
    """One execution of a program."""

    def __init__(self, popen: subprocess.Popen[bytes], pidfd: int, log: OutputLog, record: Path) -> None:
        self.popen = popen
        self.pid = popen.pid
        self.pidfd = pidfd
        self.log = log
        self.record = record
        self.reaped = False
        self.started_at = datetime.now(UTC)
        self.started_mono = time.monotonic()


class _Proc:
    def __init__(self, spec: ProcessSpec, log_path: Path) -> None:
        self.spec = spec
        self.log_path = log_path
        self.run: _Run | None = None
        self.state: ProcessState = "waiting"
        self.restarts = 0
        self.crashes = 0
        self.stopping = False
        self.last: Termination | None = None
        self.last_started: datetime | None = None
        self.timer: _Timer | None = None  # pending restart or SIGKILL escalation

    def snapshot(self) -> ProcessStatus:
        last = self.last
        running = self.run is not None and self.state == "running"
        reason = "CrashLoopBackOff" if self.state == "waiting" and last is not None else None
        if self.state == "exited" and last is not None:
            reason = last.reason
        return ProcessStatus(
            name=self.spec.name,
            state=self.state,
            pid=self.run.pid if running and self.run else None,
            restarts=self.restarts,
            started_at=self.last_started,
            finished_at=last.finished_at if last else None,
            exit_code=last.exit_code if last else None,
            signal=last.signal if last else None,
            reason=reason,
            log_path=self.log_path,
            last_termination=last,
        )


# ---------------------------------------------------------------------------------------------------------------
# The supervisor


class ManagedProcess:
    """A handle on one supervised program; every call goes through its supervisor."""

    def __init__(self, supervisor: Supervisor, spec: ProcessSpec, log_path: Path) -> None:
        self.supervisor = supervisor
        self.spec = spec
        self.name = spec.name
        self.log_path = log_path

    def status(self) -> ProcessStatus:
        return self.supervisor.status(self.name)

    @property
    def pid(self) -> int | None:
        return self.status().pid

    def wait(self, predicate: Callable[[ProcessStatus], bool], timeout: float) -> ProcessStatus:
        return self.supervisor.wait(self.name, predicate, timeout)

    def wait_running(self, timeout: float = 10.0) -> ProcessStatus:
        return self.wait(lambda s: s.state == "running", timeout)

    def wait_exited(self, timeout: float = 10.0) -> ProcessStatus:
        return self.wait(lambda s: s.state == "exited", timeout)

    def stop(self, grace: float = 5.0) -> ProcessStatus:
        return self.supervisor.stop(self.name, grace)

    def signal(self, sig: int) -> None:
        self.supervisor.signal(self.name, sig)


class Supervisor:
    """Starts, watches, restarts and stops programs; `state_dir` holds their logs and PID records."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(state_dir)
        self.records_dir = self.state_dir / "pids"
        self.logs_dir = self.state_dir / "logs"
        self.records_dir.mkdir(parents=True, exist_ok=True)
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        self._boot_id = boot_id()
        self._cond = threading.Condition()
        self._procs: dict[str, _Proc] = {}
        self._commands: deque[tuple[Callable[[], Any], Future[Any]]] = deque()
        self._timers: list[tuple[float, int, _Timer]] = []
        self._seq = itertools.count()
        self._stamp = Stamper()
        self._reading: set[_Run] = set()  # runs whose output pipe is still open
        self._closing = False
        self._closed = False
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._selector.register(self._wake_r, selectors.EVENT_READ, self._drain_wake)
        self._thread = threading.Thread(target=self._loop, name="kalab-supervisor", daemon=True)
        self._thread.start()
        # An interpreter that exits without close() would leave the programs to the death signal (no grace
        # period) and their descendants to reap_recorded; stopping them properly is kinder to keepalived.
        atexit.register(self.close, 2.0)

    # -- public API ----------------------------------------------------------------------------------------------

    def start(self, spec: ProcessSpec) -> ManagedProcess:
        """Start `spec` now; a name may be reused only once its previous program has exited for good."""
        log_path = Path(spec.log_path) if spec.log_path else self.logs_dir / f"{safe_filename(spec.name)}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)

        def command() -> None:
            current = self._procs.get(spec.name)
            if current is not None and current.state != "exited":
                raise KalabError(
                    f"A process named {spec.name} is already supervised; stop it before starting it again."
                )
            proc = _Proc(spec, log_path)
            self._spawn(proc)  # raises for a program that cannot be started at all
            self._procs[spec.name] = proc

        self._call(command)
        return ManagedProcess(self, spec, log_path)

    def status(self, name: str) -> ProcessStatus:
        with self._cond:
            return self._proc(name).snapshot()

    def statuses(self) -> dict[str, ProcessStatus]:
        with self._cond:
            return {name: proc.snapshot() for name, proc in self._procs.items()}

    def wait(self, name: str, predicate: Callable[[ProcessStatus], bool], timeout: float) -> ProcessStatus:
        """Block until the status of `name` satisfies `predicate`; a one-sentence KalabError after `timeout`."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                status = self._proc(name).snapshot()
                if predicate(status):
                    return status
                left = deadline - time.monotonic()
                if left <= 0:
                    raise KalabError(
                        f"Process {name} did not reach the expected state within {timeout:g} s "
                        f"(it is {status.state}, {status.restarts} restarts)."
                    )
                self._cond.wait(left)

    def signal(self, name: str, sig: int, *, group: bool = False) -> None:
        """Send `sig` (SIGHUP, SIGUSR1, a realtime signal, ...) to the program's recorded PID only.

        With `group`, the signal goes to the program's whole process group at once (its PID is the group ID,
        and cannot be reused while we have not reaped it): a crash of keepalived must take its VRRP child down
        in the same instant, or the child sees its parent die and gracefully releases the VIPs.
        """

        def command() -> None:
            run = self._proc(name).run
            try:
                if run is None or run.reaped:
                    raise ProcessLookupError
                if group:
                    os.killpg(run.pid, sig)
                else:
                    _signal.pidfd_send_signal(run.pidfd, sig)
            except ProcessLookupError:
                raise KalabError(f"Process {name} is not running, so it cannot be signalled.") from None

        self._call(command)

    def stop(self, name: str, grace: float = 5.0) -> ProcessStatus:
        """SIGTERM the program, SIGKILL it after `grace` seconds, and return once it is gone for good."""
        self._call(lambda: self._begin_stop(self._proc(name), grace))
        return self.wait(name, lambda s: s.state == "exited", grace + 10.0)

    def stop_all(self, grace: float = 5.0) -> dict[str, ProcessStatus]:
        """Stop every program at once (one grace period for all) and wait until all are gone."""

        def command() -> list[str]:
            for proc in self._procs.values():
                self._begin_stop(proc, grace)
            return list(self._procs)

        names = self._call(command)
        return {name: self.wait(name, lambda s: s.state == "exited", grace + 10.0) for name in names}

    def close(self, grace: float = 5.0) -> None:
        """Stop everything and end the loop thread; the supervisor cannot be used afterwards."""
        if self._closed:
            return
        try:
            self.stop_all(grace)
        finally:
            with self._cond:
                self._closing = True
            self._wake()
            self._thread.join(timeout=grace + 10.0)
            self._closed = True
            atexit.unregister(self.close)

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing between callers and the loop thread --------------------------------------------------------------

    def _proc(self, name: str) -> _Proc:
        proc = self._procs.get(name)
        if proc is None:
            raise KalabError(f"No process named {name} is supervised here.")
        return proc

    def _call(self, fn: Callable[[], _T]) -> _T:
        if threading.current_thread() is self._thread:
            return fn()
        future: Future[_T] = Future()
        with self._cond:
            if self._closing or not self._thread.is_alive():
                raise KalabError("The supervisor has been closed; create a new one.")
            self._commands.append((fn, future))
        self._wake()
        return future.result(timeout=60)

    def _wake(self) -> None:
        with self._cond:  # the loop closes the pipe under this lock, so we never write to a recycled descriptor
            if self._wake_w >= 0:
                with contextlib.suppress(BlockingIOError):
                    os.write(self._wake_w, b"x")

    def _drain_wake(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self._wake_r, 4096):
                pass

    def _after(self, delay: float, callback: Callable[[], None]) -> _Timer:
        timer = _Timer(callback)
        heapq.heappush(self._timers, (time.monotonic() + delay, next(self._seq), timer))
        return timer

    # -- the loop ------------------------------------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            timeout = max(0.0, self._timers[0][0] - time.monotonic()) if self._timers else None
            for key, _ in self._selector.select(timeout):
                with self._cond:
                    self._guarded(key.data)
                    self._cond.notify_all()
            with self._cond:
                while self._commands:
                    fn, future = self._commands.popleft()
                    try:
                        future.set_result(fn())
                    except BaseException as err:  # handed to the caller's thread, which re-raises it
                        future.set_exception(err)
                now = time.monotonic()
                while self._timers and self._timers[0][0] <= now:
                    _, _, timer = heapq.heappop(self._timers)
                    if not timer.cancelled:
                        self._guarded(timer.callback)
                self._cond.notify_all()
                if self._closing and not any(p.run for p in self._procs.values()):
                    break
        self._shutdown()

    @staticmethod
    def _guarded(callback: Callable[[], object]) -> None:
        # A bug in one callback must not end the loop: every other program would go unwatched.
        try:
            callback()
        except Exception:
            _log.exception("supervisor callback failed")

    def _shutdown(self) -> None:
        with self._cond:
            # Output pipes still open belong to processes that escaped their group (setsid); stop reading them.
            for run in list(self._reading):
                self._close_output(run)
            self._selector.close()
            os.close(self._wake_r)
            os.close(self._wake_w)
            self._wake_w = -1

    # -- running programs (loop thread only) -----------------------------------------------------------------------

    def _spawn(self, proc: _Proc) -> None:
        spec = proc.spec
        env = dict(os.environ) if spec.inherit_env else dict(_BASE_ENV)
        env.update(spec.env)
        log = proc.log_path.open("ab")
        try:
            popen = subprocess.Popen(
                spec.command(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=spec.cwd,
                start_new_session=True,
                preexec_fn=die_with_parent(os.getpid()),
            )
        except OSError as err:
            log.close()
            raise KalabError(f"Process {spec.name} could not be started: {err.strerror or err}.") from err
        assert popen.stdout is not None
        try:
            pidfd = os.pidfd_open(popen.pid)
            record = self._write_record(proc, popen.pid)
        except OSError as err:  # an unrecorded program must not run: it could never be reaped after a crash
            popen.kill()
            popen.wait()
            popen.stdout.close()
            log.close()
            raise KalabError(f"Process {spec.name} could not be recorded: {err.strerror or err}.") from err
        run = _Run(popen, pidfd, OutputLog(log, self._stamp), record)
        out_fd = popen.stdout.fileno()
        os.set_blocking(out_fd, False)
        self._selector.register(pidfd, selectors.EVENT_READ, lambda: self._on_exit(proc, run))
        self._selector.register(out_fd, selectors.EVENT_READ, lambda: self._on_output(run))
        self._reading.add(run)
        proc.run = run
        proc.state = "running"
        proc.last_started = run.started_at

    def _write_record(self, proc: _Proc, pid: int) -> Path:
        stat = read_stat(pid)  # the child is ours and unreaped, so its /proc entry exists
        assert stat is not None
        spec = proc.spec
        started = rfc3339(time.time())
        record = ProcessRecord(spec.name, pid, stat.starttime, self._boot_id, tuple(spec.argv), spec.netns, started)
        return write_record(self.state_dir, record)

    def _on_output(self, run: _Run) -> bool:
        """Log what the program wrote; False when nothing more is readable right now."""
        if run not in self._reading:  # closed earlier in the same batch of events
            return False
        assert run.popen.stdout is not None
        fd = run.popen.stdout.fileno()
        try:
            data = os.read(fd, _READ_CHUNK)
        except BlockingIOError:
            return False
        except OSError:
            data = b""
        if data:
            run.log.write(data)
            return True
        # End of output: every writer (the program and anything it left behind) is gone.
        run.log.end()
        self._close_output(run)
        return False

    def _close_output(self, run: _Run) -> None:
        assert run.popen.stdout is not None
        self._selector.unregister(run.popen.stdout.fileno())
        run.popen.stdout.close()
        run.log.close()
        self._reading.discard(run)

    def _on_exit(self, proc: _Proc, run: _Run) -> None:
        try:
            if os.waitid(os.P_PID, run.pid, os.WEXITED | os.WNOWAIT | os.WNOHANG) is None:
                return
            pinned = True
        except ChildProcessError:  # reaped behind our back (a stray os.wait()): its PID may already be reused
            pinned = False
        if pinned:
            # The program is a zombie now: its PID still names its group, so this reaches only what it left behind.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(run.pid, _signal.SIGKILL)
        returncode = run.popen.wait()
        run.reaped = True
        # Usually the program was the pipe's only writer, so its whole output is there now: log it before the
        # exit is reported, so that "exited" implies a complete log. Stragglers just dying are read later.
        while run in self._reading and self._on_output(run):
            pass
        self._selector.unregister(run.pidfd)
        os.close(run.pidfd)
        run.record.unlink(missing_ok=True)
        signum = -returncode if returncode < 0 else None
        code = 128 + signum if signum is not None else returncode
        self._finish(proc, code, signum, "Completed" if code == 0 else "Error", run.started_at, run.started_mono)

    def _finish(
        self, proc: _Proc, code: int, signum: int | None, reason: str, started_at: datetime, started_mono: float
    ) -> None:
        proc.run = None
        proc.last = Termination(code, signum, reason, started_at, datetime.now(UTC))
        if proc.timer:
            proc.timer.cancelled = True
            proc.timer = None
        if proc.stopping or self._closing or not wants_restart(proc.spec.restart_policy, code):
            proc.state = "exited"
            return
        proc.crashes = proc.spec.backoff.crashes_after(proc.crashes, time.monotonic() - started_mono)
        proc.state = "waiting"
        proc.timer = self._after(proc.spec.backoff.delay(proc.crashes), lambda: self._restart(proc))

    def _restart(self, proc: _Proc) -> None:
        proc.timer = None
        proc.restarts += 1
        # Keep the previous run's log next to the current one, like `kubectl logs --previous`.
        with contextlib.suppress(FileNotFoundError):
            proc.log_path.replace(proc.log_path.with_name(proc.log_path.name + ".previous"))
        started_at, started_mono = datetime.now(UTC), time.monotonic()
        try:
            self._spawn(proc)
        except KalabError as err:
            with contextlib.suppress(OSError), proc.log_path.open("ab") as log:
                log.write(self._stamp() + str(err).encode() + b"\n")
            self._finish(proc, 128, None, "StartError", started_at, started_mono)

    def _begin_stop(self, proc: _Proc, grace: float) -> None:
        proc.stopping = True
        if proc.timer:
            proc.timer.cancelled = True
            proc.timer = None
        run = proc.run
        if run is None or run.reaped:
            proc.state = "exited"
            return
        with contextlib.suppress(ProcessLookupError):
            _signal.pidfd_send_signal(run.pidfd, _signal.SIGTERM)

        def escalate() -> None:
            proc.timer = None
            if not run.reaped:
                with contextlib.suppress(ProcessLookupError):
                    _signal.pidfd_send_signal(run.pidfd, _signal.SIGKILL)

        proc.timer = self._after(max(grace, 0.0), escalate)
