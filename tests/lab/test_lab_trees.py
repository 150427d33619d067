"""Labs as private namespace trees (issue 9), through the `kalab` command as whoever runs the suite: names, state
files, kill -9 of each kind of lab process, two seeded labs side by side with the host's network untouched, `lab
exec`, and two `lab up` racing for one name.

The module's labs: `s1` and `s2` brought to the state after notebook 03 by `kalab lab reset`, both at once (s1
stays as the witness that keeps serving while other labs are killed; s2's keepalived, demo pod and finally top
process are killed), `a` (killed through its `unshare` parent) and `c` (the race). Every one is down at the end,
and the host's network is as it was.
"""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kalab.cluster import demo, nodes
from kalab.cluster.connect import Cluster, connect
from kalab.lab import control
from kalab.lab.dataplane import procfs
from kalab.lab.dataplane.entry import Entry
from kalab.lab.dataplane.records import ProcessRecord, read_records
from tests.support.kalabcli import one_stderr_line
from tests.support.kalabcli import run_kalab as kalab
from tests.support.markers import needs_lab_tools
from tests.support.waiting import wait_for

pytestmark = needs_lab_tools("keepalived", "iptables-save", "ip", "curl", "unshare", "nsenter")
DEMO_BODY = "Hello!<br>Welcome to RedHat Developer"
SEEDED = ("s1", "s2")


# ---------------------------------------------------------------------------------------------------------------
# What the host shows, and which processes make up a lab


def host_network() -> dict[str, str]:
    """`ip netns list`, `ip -o link` and, for root, the nat and filter tables (without comments and counters): only
    root may read the host's tables, and an ordinary user's lab holds no capability over them anyway."""

    def out(*argv: str) -> str:
        return subprocess.run(argv, capture_output=True, text=True, check=True, timeout=30).stdout

    def rules(table: str) -> str:
        lines = [ln for ln in out("iptables-save", "-t", table).splitlines() if not ln.startswith("#")]
        return "\n".join(re.sub(r"\[\d+:\d+\]", "", ln) for ln in lines)

    seen = {"ip netns list": out("ip", "netns", "list"), "ip -o link": out("ip", "-o", "link")}
    if os.geteuid() == 0:
        seen |= {"iptables nat": rules("nat"), "iptables filter": rules("filter")}
    return seen


Process = tuple[int, int]  # (host PID, start time): a PID alone may be reused


def lab_processes(top: int) -> set[Process]:
    """Every process in the PID namespace of the lab's top process, plus the `unshare` that started it."""
    namespace = procfs.pid_namespace(top)
    assert namespace is not None, f"the lab's top process {top} is gone"
    found = {(pid, start) for pid in procfs.pid_namespace_members(namespace) if (start := procfs.starttime(pid))}
    parent = parent_of(top)
    start = procfs.starttime(parent)
    assert start is not None and cmdline(parent)[0].endswith("unshare"), cmdline(parent)
    found.add((parent, start))
    return found


def alive(processes: set[Process]) -> set[Process]:
    return {(pid, start) for pid, start in processes if procfs.starttime(pid) == start}


def parent_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("PPid:"):
            return int(line.split()[1])
    raise AssertionError(f"no PPid for {pid}")


def inner_pid(pid: int) -> int | None:
    """The PID `pid` has in its own (innermost) PID namespace."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    return next((int(ln.split()[-1]) for ln in status.splitlines() if ln.startswith("NSpid:")), None)


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
    except OSError:
        return []


# ---------------------------------------------------------------------------------------------------------------
# The `kalab` command on this module's labs


def up(name: str) -> str:
    """`kalab lab up --name NAME`; the kubeconfig path it printed."""
    done = kalab("lab", "up", "--name", name, timeout=120)
    assert done.returncode == 0, done.stderr + done.stdout
    found = re.search(r"KUBECONFIG=(\S+)", done.stdout)
    assert found, done.stdout
    return found.group(1)


def status(name: str) -> dict[str, Any]:
    done = kalab("lab", "status", "--name", name, "--json", timeout=60)
    assert done.returncode == 0, done.stderr
    data: dict[str, Any] = json.loads(done.stdout)
    return data


def lab_exec(name: str, node: str, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return kalab("lab", "exec", "--name", name, node, "--", *argv, timeout=timeout)


def demo_page(name: str, vip: str) -> str:
    """What `curl http://VIP/` on the lab's bastion prints when it is the demo's page, else ""."""
    body = lab_exec(name, "bastion", "curl", "-s", "-m", "3", f"http://{vip}/").stdout
    return body if body.startswith(DEMO_BODY) else ""


def answers(name: str, vip: str, timeout: float = 30) -> str:
    """Wait for the lab's bastion to get the demo page from `vip`; the page."""
    return wait_for(lambda: demo_page(name, vip), timeout, f"the demo page on {vip} from lab {name}'s bastion", 0.3)


@dataclass
class Seeded:
    name: str
    kubeconfig: str
    cluster: Cluster
    vip: str


class Witness:
    """Lists a lab's nodes through the Python client every 0.1 s in the background, counting answers and errors."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.answers = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                frame = nodes.nodes(self.cluster)
                if len(frame) == 3 and frame["ready"].all():
                    self.answers += 1
                else:
                    self.errors.append(f"nodes: {frame[['name', 'ready']].to_dict('records')}")
            except Exception as err:
                self.errors.append(repr(err))
            self._stop.wait(0.1)

    def __enter__(self) -> Witness:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


# ---------------------------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module")
def host_before() -> dict[str, str]:
    return host_network()


@pytest.fixture(scope="module")
def home(host_before: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """This module's own KALAB_HOME; at the end every lab in it is down and the host has no namespace more."""
    path = tmp_path_factory.mktemp("lab-trees")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(control.HOME_ENV, str(path))
        patch.delenv(control.NAME_ENV, raising=False)
        yield path
        for info in control.list_labs():
            control.down(info.name)
        assert [info.name for info in control.list_labs() if info.state != "down"] == []
    assert host_network()["ip netns list"] == host_before["ip netns list"]


@pytest.fixture(scope="module")
def seeded(home: Path) -> dict[str, Seeded]:
    """s1 and s2, started with `kalab lab up` and brought to the state after notebook 03 by `kalab lab reset` at the
    same time (the notebooks themselves run against labs by name in tests/notebooks)."""
    configs = {name: up(name) for name in SEEDED}
    runs = {
        name: subprocess.Popen(
            [sys.executable, "-m", "kalab", "lab", "reset", "--name", name, "--to", "deployed", "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in SEEDED
    }
    said = {}
    try:
        for name, run in runs.items():
            stdout, stderr = run.communicate(timeout=300)
            assert run.returncode == 0, f"{name}: {stderr}{stdout}"
            said[name] = json.loads(stdout)
    finally:
        for run in runs.values():
            if run.poll() is None:  # only after a failure: the other reset is stopped too
                run.kill()
                run.communicate()
    labs = {}
    for name in SEEDED:
        cluster = connect(configs[name])
        vip = demo.service_vip(cluster, timeout=30)
        assert said[name]["stage"] == "deployed" and said[name]["vip"] == vip, said[name]
        labs[name] = Seeded(name, configs[name], cluster, vip)
    return labs


# ---------------------------------------------------------------------------------------------------------------
# Tests


def test_up_prints_the_kubeconfig_and_status_and_list_describe_the_labs(home: Path) -> None:
    kubeconfig = up("a")
    info = status("a")
    assert {"name", "state", "api", "kubeconfig", "pid"} <= info.keys()
    assert info["name"] == "a" and info["state"] == "ready" and info["kubeconfig"] == kubeconfig
    assert re.fullmatch(r"https://127\.0\.0\.1:\d+", info["api"])
    assert Path(f"/proc/{info['pid']}/ns/pid").exists()  # a live process, the lab's PID 1 …
    assert os.stat(f"/proc/{info['pid']}/ns/pid").st_ino != os.stat("/proc/self/ns/pid").st_ino  # … in its own tree
    assert nodes.nodes(connect(kubeconfig))["ready"].tolist() == [True, True, True]

    state = Path(info["state_dir"])
    assert state.parent == home
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert stat.S_IMODE(Path(kubeconfig).stat().st_mode) == 0o600

    listed = kalab("lab", "list", "--json", timeout=60)
    assert listed.returncode == 0, listed.stderr
    labs = {lab["name"]: (lab["state"], lab["pid"]) for lab in json.loads(listed.stdout)}
    assert labs["a"] == ("ready", info["pid"])

    again = kalab("lab", "up", "--name", "a", "--json", timeout=60)  # a no-op on a running lab
    assert again.returncode == 0 and json.loads(again.stdout)["pid"] == info["pid"]


def test_two_seeded_labs_answer_on_their_own_vips_and_leave_the_host_alone(
    seeded: dict[str, Seeded], host_before: dict[str, str]
) -> None:
    apis = {status(name)["api"] for name in SEEDED}
    assert len(apis) == 2
    for lab in seeded.values():
        page = answers(lab.name, lab.vip)
        assert page.startswith(DEMO_BODY), page
        # the VIP is the lab's own: the host neither holds it nor routes to it through a lab
        assert lab.vip not in subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True).stdout
    after = host_network()
    for what, before in host_before.items():
        assert after[what] == before, f"{what} changed on the host"


def test_exec_gives_the_commands_exit_status_and_output(seeded: dict[str, Seeded]) -> None:
    done = lab_exec("s1", "bastion", "sh", "-c", "echo out; echo err >&2; exit 7")
    assert (done.returncode, done.stdout, done.stderr) == (7, "out\n", "err\n")
    addr = lab_exec("s1", "master-2", "ip", "-br", "-4", "addr", "show", "kalab-eth0")
    assert addr.returncode == 0 and "192.168.7.15/24" in addr.stdout, addr.stdout

    unknown = lab_exec("s1", "master-9", "true")
    assert unknown.returncode != 0 and unknown.stdout == ""
    line = one_stderr_line(unknown)
    assert "master-9" in line and "bastion" in line and line.endswith("."), line

    absent = lab_exec("nosuchlab", "bastion", "true")
    assert absent.returncode != 0
    assert "not running" in one_stderr_line(absent)


def restarted(state: Path, old: ProcessRecord) -> ProcessRecord | None:
    """The supervisor's record of the process `old` was, once that runs again as a new process."""
    for record in read_records(state / "supervisor"):
        if record.name == old.name and (record.pid, record.starttime) != (old.pid, old.starttime):
            return record
    return None


def container_status(cluster: Cluster, namespace: str, pod: str, container: str) -> tuple[int, bool]:
    """The container's restart count and readiness, as the pod's status reports them."""
    status = cluster.core.read_namespaced_pod(pod, namespace).status
    assert status is not None and status.container_statuses, f"{namespace}/{pod} reports no containers"
    found = next(c for c in status.container_statuses if c.name == container)
    return found.restart_count, bool(found.ready)


def kill_supervised(lab: Seeded, suffix: str, with_children: bool = False) -> None:
    """SIGKILL, from the host, the lab process the supervisor records as `…<suffix>`; check the kubelet restarts it
    as a new process, counts the restart, and that nothing the old one started lives on."""
    info = status(lab.name)
    entry = Entry(info["pid"], procfs.starttime(info["pid"]))
    records = [r for r in read_records(Path(info["state_dir"]) / "supervisor") if r.name.endswith(suffix)]
    assert records, f"no supervised process …{suffix} in lab {lab.name}"
    old = records[0]
    host = entry.host_pid(old.pid)
    assert host is not None and host != old.pid  # its own PID namespace numbers it differently
    assert cmdline(host)[: len(old.argv)] == list(old.argv)
    old_start = procfs.starttime(host)
    offspring = {(p, s) for p in procfs.children(host) if (s := procfs.starttime(p)) is not None}
    assert offspring or not with_children, f"{old.name} has no child processes"
    namespace, pod, container = old.name.split("/")
    restarts, ready = container_status(lab.cluster, namespace, pod, container)
    assert ready, f"{old.name} is not ready before the kill"

    os.kill(host, signal.SIGKILL)
    wait_for(lambda: procfs.starttime(host) != old_start, 2, f"{old.name} to die")
    new = wait_for(lambda: restarted(Path(info["state_dir"]), old), 20, f"a new {old.name}", 0.1)
    new_host = entry.host_pid(new.pid) if new else None
    assert new_host is not None and procfs.starttime(new_host) is not None
    wait_for(lambda: not alive(offspring), 5, f"the children of the killed {old.name} to end")
    wait_for(
        lambda: container_status(lab.cluster, namespace, pod, container) == (restarts + 1, True),
        20,
        f"the pod's status to count the restart of {old.name}",
        0.2,
    )
    assert procfs.starttime(info["pid"]) is not None  # the lab itself lives on


def test_kill_9_of_keepalived_inside_a_lab_is_restarted_by_its_kubelet(seeded: dict[str, Seeded]) -> None:
    lab = seeded["s2"]
    answers(lab.name, lab.vip)
    kill_supervised(lab, "/keepalived", with_children=True)  # keepalived forks its VRRP process
    page = answers(lab.name, lab.vip)  # VRRP settles again and the VIP answers
    assert page.startswith(DEMO_BODY)


def test_kill_9_of_a_demo_pod_process_is_restarted_by_its_kubelet(seeded: dict[str, Seeded]) -> None:
    lab = seeded["s2"]
    kill_supervised(lab, "/php")
    answers(lab.name, lab.vip)


def test_kill_9_of_the_unshare_parent_ends_the_whole_lab(seeded: dict[str, Seeded]) -> None:
    up("a")
    info = status("a")
    processes = lab_processes(info["pid"])
    assert len(processes) >= 2
    witness = seeded["s1"]
    with Witness(witness.cluster) as watching:
        os.kill(parent_of(info["pid"]), signal.SIGKILL)
        wait_for(lambda: not alive(processes), 2, "every process of lab a to end")
        assert status("a")["state"] == "down"
        again = up("a")
    assert watching.errors == [] and watching.answers > 0
    assert status("a")["state"] == "ready" and nodes.nodes(connect(again))["ready"].all()
    answers(witness.name, witness.vip)


def test_kill_9_of_the_lab_daemon_ends_the_whole_lab(home: Path) -> None:
    """The daemon is the top process's one child: when it dies, PID 1 leaves with it and the kernel ends the rest."""
    up("d")
    info = status("d")
    processes = lab_processes(info["pid"])
    (daemon,) = procfs.children(info["pid"])
    assert "kalab.lab.daemon" in " ".join(cmdline(daemon))
    os.kill(daemon, signal.SIGKILL)
    wait_for(lambda: not alive(processes), 2, "every process of lab d to end")
    assert status("d")["state"] == "down"
    kalab("lab", "down", "--name", "d", timeout=60)


def test_sigkill_of_the_top_process_ends_the_lab_and_others_keep_serving(
    seeded: dict[str, Seeded], host_before: dict[str, str]
) -> None:
    lab, witness = seeded["s2"], seeded["s1"]
    answers(lab.name, lab.vip)
    info = status(lab.name)
    processes = lab_processes(info["pid"])
    kinds = {Path(cmdline(pid)[0]).name if cmdline(pid) else "?" for pid, _ in processes}
    assert {"unshare", "keepalived"} <= kinds, kinds  # a lab with the seed deployed: keepalived and all
    with Witness(witness.cluster) as watching:
        os.kill(info["pid"], signal.SIGKILL)
        started = time.monotonic()
        wait_for(lambda: not alive(processes), 2, f"every process of lab {lab.name} to end")
        ended = time.monotonic() - started
        assert status(lab.name)["state"] == "down"
        gone = kalab("lab", "status", "--name", lab.name, timeout=60)
        assert gone.returncode != 0 and "not running" in one_stderr_line(gone)
        assert host_network()["ip netns list"] == host_before["ip netns list"]
        answers(witness.name, witness.vip)
        kubeconfig = up(lab.name)  # nothing the killed lab left trips the next one of its name
    assert watching.errors == [] and watching.answers > 0
    fresh = status(lab.name)
    assert fresh["state"] == "ready" and fresh["pid"] != info["pid"]
    assert nodes.nodes(connect(kubeconfig))["ready"].tolist() == [True, True, True]
    assert ended < 2


def test_two_ups_of_one_name_at_once_start_one_lab(home: Path) -> None:
    ups = [
        subprocess.Popen(
            [sys.executable, "-m", "kalab", "lab", "up", "--name", "c"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    urls = []
    for started in ups:
        stdout, stderr = started.communicate(timeout=120)
        assert started.returncode == 0, stderr
        found = re.search(r"serves at (https://\S+)", stdout)
        assert found, stdout
        urls.append(found.group(1))
    assert urls[0] == urls[1] == status("c")["api"]

    state = str(home / "c")
    tops = [p for p in procfs.all_pids() if state in cmdline(p) and inner_pid(p) == 1]  # PID 1 of a tree
    assert tops == [status("c")["pid"]]
    trees = [p for p in procfs.all_pids() if cmdline(p)[:1] == ["unshare"] and state in cmdline(p)]
    assert trees == [parent_of(tops[0])]
    down = kalab("lab", "down", "--name", "c", timeout=60)
    assert down.returncode == 0 and not (home / "c").exists()
