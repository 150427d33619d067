"""What `quay.io/redhat-cop/keepalived-operator` runs inside the keepalived pod, in our own code (FACTS.md §2, §3).

The image plays three parts in the DaemonSet's pod; each is a role here:

    python -m kalab.lab.images.operator_image config-setup    --src F --dst F [--reach-ip IP]
    python -m kalab.lab.images.operator_image config-reloader --src F --dst F [--reach-ip IP] --pid-file F
                                                              [--interval S]
    python -m kalab.lab.images.operator_image exporter [-web.listen-address :9650] [-web.telemetry-path /metrics]
                                                       [--pid-file F] [--tmp-dir DIR] [--timeout S]

- config-setup (init container): copy the ConfigMap's keepalived.conf to the pod's own dir; with interfaceFromIP,
  point every `interface` line at the interface this node routes the given IP through. The pod is hostNetwork, so
  running in the node's network namespace is exactly what `ip route get` inside the pod would see.
- config-reloader: poll the ConfigMap file's md5 (every 5 s by default, like the operator's script); on a change redo
  config-setup and SIGHUP the main keepalived process.
- exporter: keepalived_exporter 0.5.0 — on each scrape signal keepalived (36), wait for the fresh
  `$TMPDIR/keepalived.json` and serve it in the exporter's metric names; `keepalived_up 0` when keepalived does not
  answer. The Go exporter finds keepalived by process name in the pod's PID namespace; lab pods share the host's,
  so here it is the pid file, or else the main keepalived process in this network namespace.

The seed's pod passes config-setup/reloader settings as environment variables (file, dst_file, reachip, pid); they
are the defaults of the matching flags, so the pod spec's own env works unchanged.

It stays one module (some 500 lines) because it is one program, the image's entry point run with `python -m`: its
roles share how keepalived is found and how the config is written, and only the command line tells them apart.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.server
import ipaddress
import json
import os
import signal
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Final

from kalab.lab.images.keepalived import DEFAULT_JSON_SIGNAL, DEFAULT_MAIN_PID_FILE, JSON_DUMP, json_signal
from kalab.model.errors import KalabError
from kalab.model.exporter import down_samples, render_exposition, samples_from_json
from kalab.model.keepalived_conf import resolve_interface

IMAGE: Final = "quay.io/redhat-cop/keepalived-operator"
ROLES: Final = ("config-setup", "config-reloader", "exporter")
DEFAULT_INTERVAL: Final = 5.0  # seconds between md5 checks, as the operator's reloader script sleeps
DEFAULT_LISTEN: Final = ":9650"
DEFAULT_METRICS_PATH: Final = "/metrics"
DEFAULT_SCRAPE_TIMEOUT: Final = 1.0  # seconds to wait for keepalived's dump before reporting keepalived_up 0
CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
_POLL: Final = 0.01  # seconds between looks at the dump file: keepalived writes it within a few ms


def _log(role: str, message: str) -> None:
    # Go's log package prefix (date and time), as the real exporter prints; the supervisor adds its own timestamps.
    print(f"{time.strftime('%Y/%m/%d %H:%M:%S')} {role}: {message}", file=sys.stderr, flush=True)


# --- config-setup ---------------------------------------------------------------------------------------------


def route_interface(ip: str) -> str:
    """The interface this network namespace routes `ip` through (`ip route get`), or the one holding it if local."""
    try:
        ipaddress.IPv4Address(ip)
    except ValueError:
        raise KalabError(
            f"--reach-ip {ip!r} is not an IPv4 address; give the address whose route names the interface."
        ) from None
    try:
        done = _ip_json("route", "get", ip)
    except KalabError as err:
        raise KalabError(
            f"This node has no route to {ip} ({err}); set interfaceFromIP to an address it can reach."
        ) from None
    if not isinstance(done, list) or not done or not isinstance(done[0], dict):
        raise KalabError(f"`ip route get {ip}` gave no route; set interfaceFromIP to an address this node can reach.")
    route = done[0]
    dev = str(route.get("dev") or "")
    if route.get("type") == "local" or dev == "lo":
        # The node's own address: keepalived belongs on the interface carrying it, not on loopback.
        dev = _address_interface(ip) or dev
    if not dev:
        raise KalabError(f"`ip route get {ip}` names no interface; fix interfaceFromIP.")
    return dev


def _address_interface(ip: str) -> str | None:
    links = _ip_json("-4", "addr", "show")
    for link in links if isinstance(links, list) else []:
        for addr in link.get("addr_info", []) if isinstance(link, dict) else []:
            if isinstance(addr, dict) and addr.get("local") == ip and link.get("ifname") != "lo":
                return str(link.get("ifname"))
    return None


def _ip_json(*args: str) -> object:
    try:
        done = subprocess.run(["ip", "-j", *args], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise KalabError(f"`ip {' '.join(args)}` could not run ({err}); is iproute2 installed?") from None
    if done.returncode != 0:
        reason = " ".join(done.stderr.split()) or f"exit code {done.returncode}"
        raise KalabError(f"`ip {' '.join(args)}` failed: {reason}")
    try:
        return json.loads(done.stdout or "[]")
    except json.JSONDecodeError:
        raise KalabError(f"`ip -j {' '.join(args)}` did not print JSON; iproute2 is too old.") from None


def rendered_config(src: Path, reach_ip: str | None) -> str:
    """What config-setup writes: the source config, with interfaces resolved when `reach_ip` is given."""
    try:
        text = src.read_text()
    except OSError as err:
        raise KalabError(f"Cannot read the source config {src}: {err.strerror}; check the ConfigMap volume.") from None
    return resolve_interface(text, route_interface(reach_ip)) if reach_ip else text


def _write_atomically(dst: Path, text: str) -> None:
    # keepalived may re-read the file at any moment (a SIGHUP from elsewhere); never let it see half a config.
    tmp = dst.with_name(f".{dst.name}.tmp{os.getpid()}")
    try:
        tmp.write_text(text)
        os.replace(tmp, dst)
    except OSError as err:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise KalabError(f"Cannot write {dst}: {err.strerror}; check the config-dst volume.") from None


def config_setup(src: Path, dst: Path, reach_ip: str | None = None) -> str:
    """Write the pod's keepalived.conf from the ConfigMap's; returns the text written."""
    text = rendered_config(src, reach_ip)
    _write_atomically(dst, text)
    return text


# --- config-reloader ------------------------------------------------------------------------------------------


def _md5(path: Path) -> str | None:
    try:
        return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()
    except OSError:
        return None  # a ConfigMap volume swaps its files by symlink; a miss now is retried next tick


def keepalived_pid(pid_file: Path | None) -> int | None:
    """The main keepalived process: from the pid file, else found in this network namespace; None if not running.

    A stale pid file may name a reused PID: only a live process called keepalived counts, so the exporter's
    signal 36 (whose default action is to terminate) or the reloader's SIGHUP never hits anything else.
    """
    if pid_file is None:
        return _find_keepalived_here()
    try:
        text = pid_file.read_text().strip()
    except OSError:
        return None
    pid = int(text) if text.isdigit() else 0
    return pid if pid > 0 and _is_live_keepalived(pid) else None


def _proc_stat(pid: int) -> tuple[str, str] | None:
    """(comm, state) from /proc/<pid>/stat; comm may contain spaces and parentheses, so split at the last ')'."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rfind(")") + 2 :].split()
    return (raw[raw.find("(") + 1 : raw.rfind(")")], fields[0]) if fields else None


def _is_live_keepalived(pid: int) -> bool:
    stat = _proc_stat(pid)
    # A zombie (Z) or dying (X) process still has a PID but will never answer a signal.
    return stat is not None and stat[0] == "keepalived" and stat[1] not in ("Z", "X")


def _own_pid_file(pid: int) -> Path | None:
    """The main pid file a keepalived process was started with (`--pid=F`, `--pid F`, `-pF`, `-p F`)."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return None
    value = DEFAULT_MAIN_PID_FILE
    for i, arg in enumerate(args):
        if arg.startswith("--pid="):
            value = arg.removeprefix("--pid=")
        elif arg in ("--pid", "-p") and i + 1 < len(args):
            value = args[i + 1]
        elif arg.startswith("-p") and not arg.startswith("--") and len(arg) > 2:
            value = arg[2:]
    # The path means what it means in that process's own mount namespace (`ip netns exec` makes one).
    base = f"/proc/{pid}/root" if value.startswith("/") else f"/proc/{pid}/cwd/"
    return Path(base + value)


def _find_keepalived_here() -> int | None:
    """The main keepalived of this process's network namespace (the lowest PID if there are several).

    The main process is the one its own pid file names: its VRRP child has the same name and command line, and
    after the main process dies the orphaned child (busy releasing its VIPs) must not be taken for keepalived.
    """
    try:
        here = os.stat("/proc/self/ns/net")
    except OSError:
        return None
    found = []
    for entry in os.listdir("/proc"):
        pid = int(entry) if entry.isdigit() else 0
        if not pid or not _is_live_keepalived(pid):
            continue
        try:
            ns = os.stat(f"/proc/{pid}/ns/net")
            own = _own_pid_file(pid)
            names_itself = own is not None and own.read_text().strip() == str(pid)
        except OSError:
            continue
        if names_itself and (ns.st_dev, ns.st_ino) == (here.st_dev, here.st_ino):
            found.append(pid)
    return min(found) if found else None


@dataclass
class Reloader:
    """One config-reloader: remembers the source's md5 and, when it changes, rewrites the config and SIGHUPs."""

    src: Path
    dst: Path
    pid_file: Path | None
    reach_ip: str | None = None
    last_md5: str | None = None

    def start(self) -> None:
        """Remember the current source; if the init container's output is missing or stale, fix it now."""
        self.last_md5 = _md5(self.src)
        try:
            wanted = rendered_config(self.src, self.reach_ip)
            current = self.dst.read_text() if self.dst.exists() else None
        except KalabError as err:
            _log("config-reloader", f"cannot check the config at start: {err}")
            return
        if current != wanted:
            self._apply(wanted, "the config differs from its source at start")

    def tick(self) -> bool:
        """Check once; True when a change was applied."""
        digest = _md5(self.src)
        if digest is None or digest == self.last_md5:
            return False
        try:
            text = rendered_config(self.src, self.reach_ip)
        except KalabError as err:
            _log("config-reloader", f"source changed but config-setup failed, will retry: {err}")
            return False
        self.last_md5 = digest
        self._apply(text, f"source changed (md5 {digest})")
        return True

    def _apply(self, text: str, why: str) -> None:
        try:
            _write_atomically(self.dst, text)
        except KalabError as err:
            _log("config-reloader", str(err))
            return
        pid = keepalived_pid(self.pid_file)
        if pid is None:
            # keepalived reads the new file when it (re)starts; nothing to signal now.
            _log("config-reloader", f"{why}; wrote {self.dst}; keepalived is not running, no reload sent")
            return
        try:
            os.kill(pid, signal.SIGHUP)
        except OSError as err:
            _log("config-reloader", f"{why}; wrote {self.dst}; could not signal keepalived pid {pid}: {err}")
            return
        _log("config-reloader", f"{why}; wrote {self.dst}; sent SIGHUP to keepalived pid {pid}")


def run_reloader(reloader: Reloader, interval: float, stop: threading.Event) -> None:
    reloader.start()
    _log("config-reloader", f"watching {reloader.src} every {interval:g}s")
    while not stop.wait(interval):
        reloader.tick()


# --- exporter -------------------------------------------------------------------------------------------------


@dataclass
class Scraper:
    """One scrape at a time: signal keepalived, wait for its fresh JSON dump, turn it into the exposition."""

    pid_file: Path | None
    tmp_dir: Path
    timeout: float = DEFAULT_SCRAPE_TIMEOUT
    signum: int = DEFAULT_JSON_SIGNAL

    def __post_init__(self) -> None:
        # keepalived writes the dump when it gets the signal; two scrapes signalling at once could each read the
        # other's dump or time out, so scrapes are serialised like the Go collector's mutex.
        self._lock = threading.Lock()

    def exposition(self) -> str:
        with self._lock:
            try:
                return render_exposition(samples_from_json(self._fresh_dump()))
            except (KalabError, OSError) as err:
                # Whatever went wrong, the scrape still succeeds and says so: keepalived_up 0, never a 500.
                _log("exporter", str(err))
                return render_exposition(down_samples())

    def _fresh_dump(self) -> str:
        pid = keepalived_pid(self.pid_file)
        if pid is None:
            where = self.pid_file or "this network namespace"
            raise KalabError(f"keepalived is not running (no live keepalived process in {where}).")
        dump = self.tmp_dir / JSON_DUMP
        # Remove the last dump first, so any file that appears is the answer to this signal. Comparing inode and
        # mtime is not enough: a freed inode number is reused at once and mtimes tick only every few ms.
        dump.unlink(missing_ok=True)
        try:
            os.kill(pid, self.signum)
        except ProcessLookupError:
            raise KalabError(f"keepalived (pid {pid}) exited before it could be signalled.") from None
        deadline = time.monotonic() + self.timeout
        while True:
            if dump.exists():  # keepalived renames the finished dump into place, so it is never half written
                try:
                    return dump.read_text()
                except OSError as err:
                    raise KalabError(f"Cannot read {dump}: {err.strerror}.") from None
            if time.monotonic() >= deadline:
                raise KalabError(
                    f"keepalived (pid {pid}) wrote no fresh {dump} within {self.timeout:g}s of signal {self.signum}."
                )
            time.sleep(_POLL)


def _index_page(metrics_path: str) -> bytes:
    return (
        "<html>\n<head><title>Keepalived Exporter</title></head>\n<body>\n<h1>Keepalived Exporter</h1>\n"
        f"<p><a href='{metrics_path}'>Metrics</a></p>\n</body>\n</html>\n"
    ).encode()


def _handler(scraper: Scraper, metrics_path: str) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        server_version = "keepalived_exporter"
        sys_version = ""

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == metrics_path:
                body, content_type = scraper.exposition().encode(), CONTENT_TYPE
            else:
                # Like Go's "/" pattern, every other path gets the index page.
                body, content_type = _index_page(metrics_path), "text/html; charset=utf-8"
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # the Go exporter logs no requests; only failed scrapes are logged

    return Handler


def parse_listen(address: str) -> tuple[str, int]:
    """Go's listen-address form: `:9650` (every IPv4 address) or `HOST:PORT`."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise KalabError(f"Listen address {address!r} is not HOST:PORT or :PORT; use e.g. :9650.")
    return host.strip("[]") or "0.0.0.0", int(port)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True  # a stuck client must not keep the process alive after SIGTERM

    def server_bind(self) -> None:
        # HTTPServer.server_bind asks DNS for the address's name (getfqdn); inside a lab namespace no resolver
        # answers, so binding would hang for the resolver's full timeout. The name is only cosmetic.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)


def make_server(listen: str, scraper: Scraper, metrics_path: str = DEFAULT_METRICS_PATH) -> http.server.HTTPServer:
    host, port = parse_listen(listen)
    try:
        return _Server((host, port), _handler(scraper, metrics_path))
    except OSError as err:
        raise KalabError(f"Cannot listen on {listen}: {err.strerror}; is another exporter using the port?") from None


def run_exporter(server: http.server.HTTPServer, stop: threading.Event, metrics_path: str) -> None:
    thread = threading.Thread(target=server.serve_forever, name="exporter-http", daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    _log("exporter", f"Providing metrics at {host!s}:{port}{metrics_path}")
    try:
        stop.wait()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# --- command line ---------------------------------------------------------------------------------------------


def _env(name: str) -> str | None:
    return os.environ.get(name) or None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="operator_image", description=__doc__.split("\n", 1)[0], allow_abbrev=False)
    roles = parser.add_subparsers(dest="role", required=True)

    def config_args(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--src", type=Path, default=_env("file"), help="the ConfigMap's keepalived.conf ($file)")
        sub.add_argument("--dst", type=Path, default=_env("dst_file"), help="the pod's keepalived.conf ($dst_file)")
        sub.add_argument("--reach-ip", default=_env("reachip"), help="interfaceFromIP: use the route to it ($reachip)")

    config_args(roles.add_parser("config-setup", allow_abbrev=False, help="copy the config (init container)"))
    reloader = roles.add_parser("config-reloader", allow_abbrev=False, help="SIGHUP keepalived on config changes")
    config_args(reloader)
    reloader.add_argument("--pid-file", type=Path, default=_env("pid"), help="keepalived's main pid file ($pid)")
    reloader.add_argument("--interval", type=float, default=DEFAULT_INTERVAL, help="seconds between md5 checks")

    exporter = roles.add_parser("exporter", allow_abbrev=False, help="keepalived_exporter on :9650")
    # The pod passes Go-style single-dash flags (-web.listen-address :9650); Go also accepts them with two dashes.
    exporter.add_argument(
        "-web.listen-address", "--web.listen-address", "--listen", dest="listen", default=DEFAULT_LISTEN
    )
    exporter.add_argument(
        "-web.telemetry-path", "--web.telemetry-path", dest="metrics_path", default=DEFAULT_METRICS_PATH
    )
    exporter.add_argument("--pid-file", type=Path, default=None, help="main keepalived pid file (default: find it)")
    exporter.add_argument("--tmp-dir", type=Path, default=None, help="keepalived's TMPDIR (default: $TMPDIR or /tmp)")
    exporter.add_argument("--timeout", type=float, default=DEFAULT_SCRAPE_TIMEOUT, help="seconds to wait for a dump")
    return parser


_ENV_OF: Final = {"src": "file", "dst": "dst_file"}


def _require(args: argparse.Namespace, *names: str) -> None:
    missing = [f"--{n} (or ${_ENV_OF[n]})" for n in names if getattr(args, n) is None]
    if missing:
        raise KalabError(f"Missing {' and '.join(missing)}; give the ConfigMap's file and the pod's copy.")


@contextlib.contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGTERM (the kubelet stopping the container) and SIGINT end the role cleanly with exit code 0."""

    def handle(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, handle) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    role: str = args.role
    stop = threading.Event()
    try:
        if role == "config-setup":
            _require(args, "src", "dst")
            config_setup(args.src, args.dst, args.reach_ip)
            return 0
        if role == "config-reloader":
            _require(args, "src", "dst")
            if args.interval <= 0:
                raise KalabError("--interval must be a positive number of seconds.")
            with _stop_on_signals(stop):
                run_reloader(Reloader(args.src, args.dst, args.pid_file, args.reach_ip), args.interval, stop)
            return 0
        tmp_dir = args.tmp_dir or Path(os.environ.get("TMPDIR") or "/tmp")
        with _stop_on_signals(stop):
            scraper = Scraper(args.pid_file, tmp_dir, args.timeout, json_signal())
            server = make_server(args.listen, scraper, args.metrics_path)
            run_exporter(server, stop, args.metrics_path)
        return 0
    except KalabError as err:
        print(f"{role}: {err}", file=sys.stderr, flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
