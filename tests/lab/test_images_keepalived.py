"""The keepalived pod's programs for real: two keepalived instances doing VRRP between two namespaces, the operator
image's config-setup / config-reloader / exporter around them, scraped from inside the namespaces.

Everything runs in namespaces this module creates (kalab-t<pid>-a/-b, joined by a veth pair); every process is
started here, recorded by PID and stopped by PID; the end of each test checks that nothing is left behind.
"""

from __future__ import annotations

import contextlib
import copy
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from kalab.lab.images import operator_image
from kalab.lab.images.keepalived import (
    config_test_command,
    json_signal,
    keepalived_command,
    pid_file,
)
from kalab.lab.images.operator_image import Scraper, keepalived_pid, main, parse_listen
from kalab.model.errors import KalabError
from kalab.model.exporter import down_samples, render_exposition
from kalab.model.keepalived_conf import INTERFACE_PLACEHOLDER, render_config
from kalab.model.prometheus import parse_exposition
from tests.support.markers import needs_root_tools
from tests.support.paths import FIXTURES
from tests.support.waiting import wait_for

IFACE = "kalab-eth0"
ADDRS = ("192.168.7.14", "192.168.7.15")
PODS = ("keepalivedgroup-workers-aaaaa", "keepalivedgroup-workers-bbbbb")
VIP, VIP2 = "172.21.6.50", "172.21.6.51"
PORT = 9650
# Each poll spawns ip/curl, and each scrape makes keepalived dump its state: poll at the pace these tests always had.
POLL = 0.05


# --- pure parts (no root needed) ------------------------------------------------------------------------------


def test_keepalived_command_has_the_operators_flags_and_private_files(tmp_path: Path) -> None:
    argv, env = keepalived_command(PODS[0], tmp_path / "keepalived.conf", tmp_path / "pid", tmp_path / "tmp")
    assert argv[:4] == ["/usr/sbin/keepalived", "--log-console", "--log-detail", "--dont-fork"]
    assert f"--config-id={PODS[0]}" in argv
    assert f"--use-file={tmp_path / 'keepalived.conf'}" in argv
    assert f"--pid={tmp_path / 'pid' / 'keepalived.pid'}" in argv
    # Every pid file keepalived checks at start-up is the pod's own, so two nodes never block each other.
    for flag in ("--vrrp_pid", "--checkers_pid", "--bfd_pid"):
        assert any(a.startswith(f"{flag}={tmp_path / 'pid'}/") for a in argv), flag
    assert "--no-syslog" in argv
    assert env["TMPDIR"] == str(tmp_path / "tmp")
    assert env["POD_NAME"] == PODS[0]
    assert pid_file(tmp_path / "pid") == tmp_path / "pid" / "keepalived.pid"


def test_listen_addresses_follow_go() -> None:
    assert parse_listen(":9650") == ("0.0.0.0", 9650)
    assert parse_listen("192.168.7.14:9650") == ("192.168.7.14", 9650)
    with pytest.raises(KalabError):
        parse_listen("9650")


def test_the_exporter_accepts_the_pods_go_style_flags() -> None:
    args = operator_image._parser().parse_args(
        ["exporter", "-web.listen-address", ":9650", "-web.telemetry-path", "/metrics"]
    )
    assert (args.listen, args.metrics_path) == (":9650", "/metrics")
    args = operator_image._parser().parse_args(["exporter", "--web.listen-address=10.0.0.1:1"])
    assert args.listen == "10.0.0.1:1"


def test_a_scrape_without_keepalived_reports_down(tmp_path: Path) -> None:
    scraper = Scraper(tmp_path / "missing.pid", tmp_path, timeout=0.2)
    assert scraper.exposition() == render_exposition(down_samples())


def test_a_stale_pid_file_naming_another_process_is_never_signalled(tmp_path: Path) -> None:
    # Signal 36's default action terminates a process: this test would die if the exporter signalled it.
    stale = tmp_path / "keepalived.pid"
    stale.write_text(f"{os.getpid()}\n")
    assert keepalived_pid(stale) is None
    assert Scraper(stale, tmp_path, timeout=0.2).exposition() == render_exposition(down_samples())


def test_config_setup_copies_and_fails_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src, dst = tmp_path / "src.conf", tmp_path / "dst.conf"
    src.write_text("global_defs {\n}\n")
    assert main(["config-setup", "--src", str(src), "--dst", str(dst)]) == 0
    assert dst.read_text() == src.read_text()
    assert main(["config-setup", "--src", str(tmp_path / "nope.conf"), "--dst", str(dst)]) != 0
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "nope.conf" in err


# --- the namespaces and processes -----------------------------------------------------------------------------


def ip(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *argv], check=True, capture_output=True, text=True, timeout=30)


def netns_names() -> set[str]:
    return {line.split()[0] for line in ip("netns", "list").stdout.splitlines() if line.strip()}


def pid_alive(pid: int) -> bool:
    """True while the PID is a process that is not a zombie (a zombie has already let go of everything)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return raw[raw.rfind(")") + 2 :].split()[0] not in ("Z", "X")


@dataclass
class Pair:
    """Two namespaces joined by a veth pair, with one state dir per node and every process started in them."""

    ns: tuple[str, str]
    root: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    extra_pids: list[int] = field(default_factory=list)  # keepalived VRRP children: not our children, still ours

    def node_dir(self, i: int, sub: str) -> Path:
        path = self.root / f"node{i}" / sub
        path.mkdir(parents=True, exist_ok=True)
        return path

    def start(self, i: int, argv: list[str], env: dict[str, str], log: str) -> subprocess.Popen[bytes]:
        with open(self.node_dir(i, "logs") / log, "ab") as out:
            proc = subprocess.Popen(["ip", "netns", "exec", self.ns[i], *argv], env=env, stdout=out, stderr=out)
        self.procs.append(proc)
        return proc

    def run_role(self, i: int, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ip", "netns", "exec", self.ns[i], sys.executable, "-m", "kalab.lab.images.operator_image", *args],
            capture_output=True,
            text=True,
            timeout=30,
            env=env or python_env(),
        )

    def start_role(self, i: int, log: str, *args: str, tmp_dir: Path | None = None) -> subprocess.Popen[bytes]:
        env = python_env()
        if tmp_dir is not None:
            env["TMPDIR"] = str(tmp_dir)
        return self.start(i, [sys.executable, "-m", "kalab.lab.images.operator_image", *args], env, log)

    def log(self, i: int, name: str) -> str:
        path = self.node_dir(i, "logs") / name
        return path.read_text(errors="replace") if path.exists() else ""

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            stop(proc)
        for pid in self.extra_pids:
            # A VRRP child exits soon after its parent (it gets SIGTERM when the parent dies); make sure, by PID.
            deadline = time.monotonic() + 5
            while pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            with contextlib.suppress(OSError):
                if pid_alive(pid) and Path(f"/proc/{pid}/comm").read_text().strip() == "keepalived":
                    os.kill(pid, signal.SIGKILL)


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> int:
    """Stop one process we started, by its PID: the signal, then SIGKILL if it has not exited within 5 s."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, sig)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
    return proc.returncode


def python_env() -> dict[str, str]:
    env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "LANG": "C.UTF-8"}
    # The venv's interpreter finds kalab on its own; keep an explicit path too for a source checkout.
    env["PYTHONPATH"] = str(Path(operator_image.__file__).resolve().parents[3])
    return env


@pytest.fixture
def pair() -> Iterator[Pair]:
    names = (f"kalab-t{os.getpid()}-a", f"kalab-t{os.getpid()}-b")
    root = Path(tempfile.mkdtemp(prefix=f"kalab-t{os.getpid()}-"))
    made = Pair(names, root)
    try:
        for ns in names:
            ip("netns", "add", ns)
        ip("link", "add", IFACE, "netns", names[0], "type", "veth", "peer", "name", IFACE, "netns", names[1])
        for ns, addr in zip(names, ADDRS, strict=True):
            ip("-n", ns, "addr", "add", f"{addr}/24", "dev", IFACE)
            ip("-n", ns, "link", "set", IFACE, "up")
            ip("-n", ns, "link", "set", "lo", "up")
        yield made
    finally:
        # Processes first: a namespace with a process still in it lives on after `ip netns del`.
        made.stop_all()
        for ns in names:
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True, timeout=30)
        subprocess.run(["rm", "-rf", "--one-file-system", str(root)], check=False, timeout=30)
    assert not set(names) & netns_names(), "a test namespace was left behind"
    assert all(p.poll() is not None for p in made.procs), "a started process was left running"
    assert not any(pid_alive(pid) for pid in made.extra_pids), "a keepalived child was left running"


# --- the operator's objects -----------------------------------------------------------------------------------


def load(name: str) -> Any:
    return yaml.safe_load((FIXTURES / "operator" / name).read_text())


def group(**spec: Any) -> dict[str, Any]:
    obj: dict[str, Any] = load("keepalivedgroup-workers.yaml")
    obj["spec"].update({"interface": IFACE, **spec})
    return obj


def keepalived_pods() -> list[dict[str, Any]]:
    template = load("keepalived-pods.yaml")["items"][0]
    pods = []
    for name, addr in zip(PODS, ADDRS, strict=True):
        pod = copy.deepcopy(template)
        pod["metadata"]["name"] = name
        pod["status"].update(hostIP=addr, podIP=addr)
        pods.append(pod)
    return pods


def services(*extra_vips: str) -> list[dict[str, Any]]:
    """The seed's demo service, plus one more LoadBalancer service (demo/demo2) per extra VIP."""
    demo = load("demo-service.yaml")
    result = [demo]
    for n, vip in enumerate(extra_vips, 2):
        svc = copy.deepcopy(demo)
        svc["metadata"]["name"] = f"demo{n}"
        svc["spec"]["externalIPs"] = [vip]
        svc["status"]["loadBalancer"]["ingress"] = [{"ip": vip}]
        result.append(svc)
    return result


# --- looking at the data plane (always from inside the namespaces) --------------------------------------------


def holders(pair: Pair, vip: str) -> list[int]:
    """Which nodes (0/1) hold `vip` on their segment interface."""
    found = []
    for i, ns in enumerate(pair.ns):
        out = ip("-n", ns, "-o", "-4", "addr", "show", "dev", IFACE).stdout
        if f" {vip}/" in out:
            found.append(i)
    return found


def scrape(pair: Pair, node: int, path: str = "/metrics") -> tuple[str, str]:
    """(body, content type) of node's exporter, fetched from inside namespace A; curl --fail rejects any 5xx."""
    url = f"http://{ADDRS[node]}:{PORT}{path}"
    done = subprocess.run(
        ["ip", "netns", "exec", pair.ns[0], "curl", "-sS", "--fail", "-m", "5", "-w", "\n#CT %{content_type}", url],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, f"scrape of node {node} failed: {done.stderr.strip()}"
    body, _, content_type = done.stdout.rpartition("\n#CT ")
    return body, content_type.strip()


def frame(pair: Pair, node: int) -> pd.DataFrame:
    return parse_exposition(scrape(pair, node)[0], node=node)


def state_of(df: pd.DataFrame, instance: str) -> str | None:
    """The one state the exporter labels `instance` with, or None while it has none (or several)."""
    if "name" not in df.columns:
        return None
    rows = df[(df["metric"] == "keepalived_vrrp_advert_sent") & (df["name"] == instance)]
    states = set(rows["state"])
    return states.pop() if len(states) == 1 else None


def up(df: pd.DataFrame) -> float:
    return float(df[df["metric"] == "keepalived_up"]["value"].iloc[0])


def agreed_master(pair: Pair, instance: str, vip: str) -> list[int]:
    """[the node] that holds `vip` alone and whose exporter says MASTER while the other's says BACKUP, else [].

    A list, like `holders`, so that node 0 is a truthy answer for `wait_for`.
    """
    nodes = holders(pair, vip)
    if len(nodes) != 1:
        return []
    master = nodes[0]
    states = (state_of(frame(pair, 0), instance), state_of(frame(pair, 1), instance))
    wanted = tuple("MASTER" if i == master else "BACKUP" for i in (0, 1))
    return [master] if states == wanted else []


# --- the full pod, twice --------------------------------------------------------------------------------------


@needs_root_tools("ip", "keepalived", "curl")
def test_two_keepalived_pods_elect_one_master_export_reload_and_go_down(pair: Pair) -> None:
    src = pair.node_dir(0, "configmap") / "keepalived.conf"  # one ConfigMap, mounted into both pods
    src.write_text(render_config(group(), services(), keepalived_pods()).text)
    dsts, pid_dirs, tmp_dirs = [], [], []
    for i in (0, 1):
        dst = pair.node_dir(i, "config-dst") / "keepalived.conf"
        done = pair.run_role(i, "config-setup", "--src", str(src), "--dst", str(dst))
        assert done.returncode == 0, done.stderr
        assert dst.read_text() == src.read_text()
        dsts.append(dst)
        pid_dirs.append(pair.node_dir(i, "pid"))
        tmp_dirs.append(pair.node_dir(i, "stats"))

    started = time.monotonic()
    keepaliveds = []
    for i in (0, 1):
        argv, env = keepalived_command(PODS[i], dsts[i], pid_dirs[i], tmp_dirs[i])
        keepaliveds.append(pair.start(i, argv, env, "keepalived.log"))
    for i in (0, 1):
        vrrp_pid = wait_for(
            lambda i=i: _read_pid(pid_dirs[i] / "vrrp.pid"), 10, f"node {i}'s VRRP child", interval=POLL
        )
        pair.extra_pids.append(vrrp_pid)
        assert _read_pid(pid_file(pid_dirs[i])) == keepaliveds[i].pid  # `ip netns exec` execs keepalived itself
    wait_for(lambda: len(holders(pair, VIP)) == 1, 15, f"exactly one node to hold {VIP}", interval=POLL)
    election = time.monotonic() - started

    for i in (0, 1):
        # Node 0's exporter is told the pid file and its address; node 1's runs with exactly the seed pod's args
        # (all addresses, no pid file) and finds the keepalived of its own network namespace.
        where = ["--pid-file", str(pid_file(pid_dirs[0])), "-web.listen-address", f"{ADDRS[0]}:{PORT}"]
        exporter_args = where if i == 0 else ["-web.listen-address", f":{PORT}"]
        pair.start_role(
            i, "exporter.log", "exporter", *exporter_args, "-web.telemetry-path", "/metrics", tmp_dir=tmp_dirs[i]
        )
        pair.start_role(
            i,
            "reloader.log",
            "config-reloader",
            "--src",
            str(src),
            "--dst",
            str(dsts[i]),
            "--pid-file",
            str(pid_file(pid_dirs[i])),
            "--interval",
            "0.2",
        )
    wait_for(lambda: all(_answers(pair, i) for i in (0, 1)), 10, "both exporters to answer", interval=POLL)

    body, content_type = scrape(pair, 0)
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"
    assert "# TYPE keepalived_vrrp_advert_sent counter" in body
    index, _ = scrape(pair, 1, "/")
    assert "<a href='/metrics'>" in index

    [master] = wait_for(
        lambda: agreed_master(pair, "demo/demo", VIP), 10, "the exporters to agree with the VIP", interval=POLL
    )
    frames = [frame(pair, 0), frame(pair, 1)]
    assert [up(f) for f in frames] == [1.0, 1.0]
    for f in frames:
        assert set(f[f["metric"].str.startswith("keepalived_vrrp_")]["intf"]) == {IFACE}
    print(f"VRRP election: {election:.2f}s, MASTER for demo/demo: node {master}")

    # Concurrent scrapes are served one signal at a time, and none of them misses its dump.
    url = f"http://{ADDRS[0]}:{PORT}/metrics"
    burst = subprocess.run(
        ["ip", "netns", "exec", pair.ns[0], "curl", "-sS", "--fail", "-m", "10", "--parallel", *[url] * 6],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert burst.returncode == 0, burst.stderr
    assert burst.stdout.count("\nkeepalived_up 1\n") == 6

    # A second service: the operator re-renders the ConfigMap; each reloader sees the md5 change and SIGHUPs.
    new = render_config(group(), services(VIP2), keepalived_pods(), previous_router_ids={"demo/demo": 1}).text
    tmp = src.with_name(".keepalived.conf.new")
    tmp.write_text(new)
    os.replace(tmp, src)  # a ConfigMap volume update is an atomic swap too
    changed = time.monotonic()
    [master2] = wait_for(
        lambda: agreed_master(pair, "demo/demo2", VIP2), 15, "demo/demo2's VIP and MASTER", interval=POLL
    )
    print(f"reload to new MASTER: {time.monotonic() - changed:.2f}s, MASTER for demo/demo2: node {master2}")
    assert holders(pair, VIP) == [master], "the reload must not move the existing VIP"
    # Each reloader logs after its SIGHUP, which keepalived may act on first: wait for both lines.
    wait_for(
        lambda: all("sent SIGHUP to keepalived pid" in pair.log(i, "reloader.log") for i in (0, 1)),
        5,
        "both reloaders to log their SIGHUP",
    )
    for i in (0, 1):
        assert dsts[i].read_text() == new
        assert all(p.poll() is None for p in keepaliveds), "a reload must not stop keepalived"

    # keepalived dies on one node: its exporter keeps serving 200 with keepalived_up 0 and no VRRP samples,
    # and (its VRRP child having released the VIPs on the parent's death) the other node takes over everything.
    victim, survivor = 1, 0  # node 1 is the exporter that finds keepalived by itself: the harder case
    os.kill(keepaliveds[victim].pid, signal.SIGKILL)
    keepaliveds[victim].wait(timeout=5)
    [down] = wait_for(lambda: _down_frame(pair, victim), 10, "the dead node's exporter to report down", interval=POLL)
    assert list(down["metric"]) == ["keepalived_up"]
    # Also for the exporter that finds keepalived by itself: the orphaned VRRP child is not taken for keepalived.
    assert "keepalived is not running" in pair.log(victim, "exporter.log")
    # MASTER (the exporter's view) and the addresses (the kernel's) are two facts: wait for both together.
    wait_for(
        lambda: _all_master(pair, survivor) and holders(pair, VIP) == [survivor] == holders(pair, VIP2),
        10,
        "the survivor to be MASTER of both and hold both VIPs alone",
        interval=POLL,
    )

    # SIGTERM ends every role cleanly.
    for proc in pair.procs:
        if proc not in keepaliveds:
            assert stop(proc) == 0, proc.args


def _read_pid(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _answers(pair: Pair, node: int) -> bool:
    done = subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            pair.ns[0],
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "-m",
            "2",
            f"http://{ADDRS[node]}:{PORT}/",
        ],
        capture_output=True,
        timeout=30,
    )
    return done.returncode == 0


def _down_frame(pair: Pair, node: int) -> list[pd.DataFrame]:
    """[node's scrape] once it says keepalived_up 0, else [] (a list: a DataFrame has no truth value for `wait_for`)."""
    df = frame(pair, node)
    return [df] if up(df) == 0.0 else []


def _all_master(pair: Pair, node: int) -> bool:
    df = frame(pair, node)
    return state_of(df, "demo/demo") == "MASTER" and state_of(df, "demo/demo2") == "MASTER"


# --- interfaceFromIP ------------------------------------------------------------------------------------------


@needs_root_tools("ip", "keepalived")
def test_config_setup_finds_the_interface_from_ip_and_keepalived_accepts_it(pair: Pair) -> None:
    src = pair.node_dir(0, "configmap") / "keepalived.conf"
    text = render_config(group(interfaceFromIP=ADDRS[1]), services(), keepalived_pods()).text
    assert f"interface {INTERFACE_PLACEHOLDER}\n" in text
    src.write_text(text)
    dst = pair.node_dir(0, "config-dst") / "keepalived.conf"

    done = pair.run_role(0, "config-setup", "--src", str(src), "--dst", str(dst), "--reach-ip", ADDRS[1])
    assert done.returncode == 0, done.stderr
    written = dst.read_text()
    assert f"interface {INTERFACE_PLACEHOLDER}" not in written  # (the header comment still names it)
    assert f"    interface {IFACE}\n" in written
    test = subprocess.run(
        ["ip", "netns", "exec", pair.ns[0], *config_test_command(dst, PODS[0])],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert test.returncode == 0, test.stderr

    # The node's own address resolves to the interface carrying it, not to loopback.
    own = pair.node_dir(0, "config-dst") / "own.conf"
    done = pair.run_role(0, "config-setup", "--src", str(src), "--dst", str(own), "--reach-ip", ADDRS[0])
    assert done.returncode == 0, done.stderr
    assert f"    interface {IFACE}\n" in own.read_text()

    # The pod's own environment variables work as well as flags (the seed's init container passes env only).
    env = {**python_env(), "file": str(src), "dst_file": str(own), "reachip": ADDRS[1]}
    assert pair.run_role(0, "config-setup", env=env).returncode == 0

    # No route (the namespace has no default route): one line on stderr, non-zero exit, nothing written.
    missing = pair.node_dir(0, "config-dst") / "none.conf"
    done = pair.run_role(0, "config-setup", "--src", str(src), "--dst", str(missing), "--reach-ip", "10.99.0.1")
    assert done.returncode != 0
    assert len(done.stderr.strip().splitlines()) == 1 and "10.99.0.1" in done.stderr
    assert not missing.exists()


def test_json_signal_is_keepaliveds() -> None:
    assert json_signal() == 36
