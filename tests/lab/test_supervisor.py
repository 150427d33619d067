"""The process supervisor against the real kernel: namespaces, logs, exit codes, restarts, stops and crash recovery."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from kalab.lab.dataplane.processes import ProcessSpec
from kalab.lab.dataplane.records import read_records, reap_recorded, record_for, write_record
from kalab.lab.dataplane.restart_policy import Backoff
from kalab.lab.dataplane.supervisor import Supervisor
from kalab.model.errors import KalabError
from tests.support.markers import needs_root_tools
from tests.support.netns import netns
from tests.support.waiting import wait_for

STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z ")
FAST = Backoff(initial=0.02, cap=0.1, reset_after=10.0)


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "kalab-state"


@pytest.fixture
def sup(state_dir: Path) -> Iterator[Supervisor]:
    supervisor = Supervisor(state_dir)
    try:
        yield supervisor
    finally:
        supervisor.close(grace=1.0)
        assert read_records(state_dir) == []  # every record is dropped once its process is gone


def alive(pid: int) -> bool:
    """True while `pid` runs (a zombie waiting for its new parent to reap it counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def session_members(sid: int) -> list[int]:
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[3]) == sid and fields[0] != "Z":
            members.append(int(entry))
    return members


def log_lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


@needs_root_tools("ip")  # its namespace is made among the host's (tests/support/netns.py)
def test_runs_in_the_namespace_with_timestamped_log(sup: Supervisor, tmp_path: Path) -> None:
    with netns("eth0", "192.168.7.13/24") as ns:
        proc = sup.start(ProcessSpec("addr", ["ip", "-o", "addr"], netns=ns))
        status = proc.wait_exited()
    assert (status.exit_code, status.signal, status.reason, status.restarts) == (0, None, "Completed", 0)
    assert status.started_at is not None and status.finished_at is not None
    assert status.started_at <= status.finished_at
    lines = log_lines(proc.log_path)
    assert lines and all(STAMP.match(line) for line in lines)
    # The program saw the namespace's interfaces, not the host's.
    assert any("eth0" in line and "192.168.7.13/24" in line for line in lines)


def test_env_and_working_directory(sup: Supervisor, tmp_path: Path) -> None:
    work = tmp_path / "kalab-cwd"
    work.mkdir()
    spec = ProcessSpec(
        "env",
        ["sh", "-c", 'echo "pod=$POD_NAME"; pwd; echo "home=${HOME:-unset}"'],
        env={"POD_NAME": "test-0"},
        cwd=work,
        log_path=tmp_path / "kalab-logs" / "env.log",
    )
    proc = sup.start(spec)
    proc.wait_exited()
    text = [STAMP.sub("", line) for line in log_lines(proc.log_path)]
    assert text == ["pod=test-0", str(work), "home=unset"]  # only what the spec gives, like a container


def test_exit_codes_and_signals_are_reported(sup: Supervisor) -> None:
    failed = sup.start(ProcessSpec("fails", ["sh", "-c", "echo bye; printf 'no newline'; exit 7"])).wait_exited()
    assert (failed.exit_code, failed.signal, failed.reason) == (7, None, "Error")
    killed = sup.start(ProcessSpec("killed", ["sh", "-c", "kill -KILL $$"])).wait_exited()
    assert (killed.exit_code, killed.signal) == (128 + 9, 9)
    assert [STAMP.sub("", line) for line in log_lines(failed.log_path)] == ["bye", "no newline"]


def test_backoff_doubles_up_to_its_cap() -> None:
    backoff = Backoff(initial=0.1, cap=5.0)
    assert [backoff.delay(n) for n in range(1, 9)] == [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]


def test_never_does_not_restart(sup: Supervisor) -> None:
    status = sup.start(ProcessSpec("never", ["sh", "-c", "exit 3"], restart_policy="Never", backoff=FAST))
    final = status.wait_exited()  # "exited" means no restart is scheduled
    assert (final.restarts, final.exit_code) == (0, 3)


def test_on_failure_restarts_until_success(sup: Supervisor, tmp_path: Path) -> None:
    # Fails twice, then succeeds: a counter file in the working directory survives the restarts.
    script = 'n=$(cat count 2>/dev/null || echo 0); n=$((n+1)); echo $n > count; echo "run $n"; [ "$n" -ge 3 ]'
    work = tmp_path / "kalab-work"
    work.mkdir()
    proc = sup.start(ProcessSpec("onfail", ["sh", "-c", script], cwd=work, restart_policy="OnFailure", backoff=FAST))
    final = proc.wait_exited()
    assert (final.restarts, final.exit_code, final.reason) == (2, 0, "Completed")
    # The previous run's log is kept aside, like `kubectl logs --previous`.
    assert STAMP.sub("", log_lines(proc.log_path)[0]) == "run 3"
    assert STAMP.sub("", log_lines(proc.log_path.with_name("onfail.log.previous"))[0]) == "run 2"


def test_always_restarts_even_after_success_and_stop_ends_it(sup: Supervisor) -> None:
    proc = sup.start(ProcessSpec("always", ["true"], restart_policy="Always", backoff=FAST))
    status = proc.wait(lambda s: s.restarts >= 3, timeout=10)
    assert status.last_termination is not None and status.last_termination.exit_code == 0
    final = proc.stop(grace=1.0)
    assert final.state == "exited"
    restarts = final.restarts
    # Stopped for good: no restart is pending, so the count cannot change any more.
    assert sup.status("always").restarts == restarts and sup.status("always").state == "exited"


def test_crash_loop_reports_waiting(sup: Supervisor) -> None:
    slow = Backoff(initial=0.5, cap=0.5)
    proc = sup.start(ProcessSpec("crashloop", ["sh", "-c", "exit 1"], restart_policy="Always", backoff=slow))
    waiting = proc.wait(lambda s: s.state == "waiting", timeout=10)
    assert waiting.reason == "CrashLoopBackOff" and waiting.exit_code == 1 and waiting.pid is None
    proc.wait(lambda s: s.restarts >= 1, timeout=10)


def test_graceful_stop_uses_sigterm(sup: Supervisor) -> None:
    proc = sup.start(ProcessSpec("sleeper", ["sleep", "600"]))
    proc.wait_running()
    final = proc.stop(grace=5.0)
    assert (final.exit_code, final.signal) == (128 + 15, 15)


def test_stop_escalates_to_sigkill_and_leaves_nothing_behind(sup: Supervisor) -> None:
    # Ignores SIGTERM and leaves a child of its own behind: both must be gone after stop.
    argv = ["sh", "-c", "trap '' TERM; sleep 600 & echo child $!; wait"]
    proc = sup.start(ProcessSpec("stubborn", argv))
    line = wait_for(lambda: [ln for ln in log_lines(proc.log_path) if " child " in ln], 10, "the child's PID")
    child = int(line[0].split()[-1])
    pid = proc.wait_running().pid
    assert pid is not None and alive(child)
    final = proc.stop(grace=0.3)
    assert (final.exit_code, final.signal) == (128 + 9, 9)
    wait_for(lambda: not alive(child), 5, "the left-behind child to die")
    assert session_members(pid) == []


def test_signals_reach_the_program(sup: Supervisor) -> None:
    program = textwrap.dedent("""
        import os, signal, sys, time
        # os.write, not print: a second signal landing inside the first handler's print re-enters the buffer.
        for s in (signal.SIGHUP, signal.SIGRTMIN + 4):
            signal.signal(s, lambda n, f: os.write(1, b"got %d\\n" % n))
        print("ready", flush=True)
        time.sleep(600)
    """)
    proc = sup.start(ProcessSpec("signals", [sys.executable, "-c", program]))
    wait_for(lambda: any("ready" in ln for ln in log_lines(proc.log_path)), 10, "the program to be ready")
    proc.signal(signal.SIGHUP)
    proc.signal(signal.SIGRTMIN + 4)  # 36: what keepalived_exporter sends for a JSON dump
    want = {f"got {int(signal.SIGHUP)}", f"got {int(signal.SIGRTMIN) + 4}"}
    wait_for(lambda: want <= {STAMP.sub("", ln) for ln in log_lines(proc.log_path)}, 10, "both signals")
    proc.stop(grace=1.0)
    with pytest.raises(KalabError, match="not running"):
        proc.signal(signal.SIGHUP)


def test_names_are_unique_while_running(sup: Supervisor) -> None:
    proc = sup.start(ProcessSpec("one", ["sleep", "600"]))
    with pytest.raises(KalabError, match="already supervised"):
        sup.start(ProcessSpec("one", ["sleep", "600"]))
    proc.stop(grace=1.0)
    sup.start(ProcessSpec("one", ["true"])).wait_exited()  # reusable once exited


def test_a_program_that_cannot_start_is_an_error(sup: Supervisor) -> None:
    with pytest.raises(KalabError, match="could not be started"):
        sup.start(ProcessSpec("missing", ["/nonexistent/program"]))
    with pytest.raises(KalabError):
        ProcessSpec("bad", ["true"], restart_policy="Sometimes")  # type: ignore[arg-type]


def test_records_hold_pid_and_start_time_while_running(sup: Supervisor, state_dir: Path) -> None:
    proc = sup.start(ProcessSpec("recorded", ["sleep", "600"]))
    pid = proc.wait_running().pid
    [record] = read_records(state_dir)
    assert record.pid == pid and record.name == "recorded"
    assert record.starttime == record_for("x", record.pid).starttime
    sup.stop_all(grace=1.0)
    assert read_records(state_dir) == []


SUPERVISOR_SCRIPT = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from kalab.lab.dataplane.processes import ProcessSpec
    from kalab.lab.dataplane.supervisor import Supervisor
    sup = Supervisor(Path(sys.argv[1]))
    argv = ["sh", "-c", "sleep 600 & sleep 600 & echo started; wait"]
    proc = sup.start(ProcessSpec("victim", argv, netns=sys.argv[2]))
    print(proc.wait_running().pid, flush=True)
    time.sleep(600)
""")


@needs_root_tools("ip")  # its namespace is made among the host's (tests/support/netns.py)
def test_reap_after_a_supervisor_crash_kills_exactly_what_it_started(state_dir: Path) -> None:
    with netns() as ns:
        crashed = subprocess.Popen(
            [sys.executable, "-c", SUPERVISOR_SCRIPT, str(state_dir), ns], stdout=subprocess.PIPE, text=True
        )
        pid = 0
        try:
            assert crashed.stdout is not None
            pid = int(crashed.stdout.readline())
            wait_for(lambda: len(session_members(pid)) == 3, 10, "the program and its two sleeps")
            crashed.kill()  # the supervisor dies without cleaning up
            crashed.wait(timeout=10)
            # The death signal took the program itself; its own children are left for the records to find.
            wait_for(lambda: not alive(pid), 10, "the program to get its death signal")
            survivors = session_members(pid)
            assert len(survivors) == 2
            [record] = read_records(state_dir)
            assert record.pid == pid

            reaped = reap_recorded(state_dir)
            assert [r.pid for r in reaped] == [pid]
            wait_for(lambda: not any(alive(p) for p in survivors), 5, "the survivors to die")
            assert read_records(state_dir) == []
        finally:
            if crashed.poll() is None:
                crashed.kill()
                crashed.wait(timeout=10)
            for member in session_members(pid) if pid else []:  # never leave a sleeper behind, even on failure
                os.kill(member, signal.SIGKILL)


def test_reap_never_hits_a_reused_pid(state_dir: Path) -> None:
    unrelated = subprocess.Popen(["sleep", "600"], start_new_session=True)
    ours = subprocess.Popen(["sleep", "600"], start_new_session=True)
    try:
        # A record whose PID now belongs to another program (different start time) must be left alone...
        genuine = record_for("unrelated", unrelated.pid)
        write_record(state_dir, genuine.__class__(**{**genuine.__dict__, "starttime": genuine.starttime - 1}))
        # ...while a record that matches PID and start time is killed.
        write_record(state_dir, record_for("ours", ours.pid))
        reaped = reap_recorded(state_dir)
        assert [r.name for r in reaped] == ["ours"]
        assert ours.wait(timeout=5) == -signal.SIGKILL
        assert unrelated.poll() is None
        assert read_records(state_dir) == []
    finally:
        for proc in (unrelated, ours):
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)
