"""Bad input to the real `kalab` command: one sentence on stderr, a non-zero exit, nothing written.

None needs a lab (the kubeconfig cases stop at parsing). Most cases call the command's main() in this process
(kalabcli.run_kalab_here): the same parser and handlers, without a Python start-up and the command's imports
(jsonschema alone costs 1.3 s) per case. The first case of each test, and every case with a FIFO (which could
block: only a subprocess can be given up after a timeout), run `python -m kalab` as a user would.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from kalab.cluster.connect import connect
from kalab.model.errors import KalabError
from tests.support.kalabcli import one_sentence, one_stderr_line, run_kalab, run_kalab_here

GROUP = """apiVersion: redhatcop.redhat.io/v1alpha1
kind: KeepalivedGroup
metadata: {name: g, namespace: keepalived-operator}
spec: {interface: ens3}
"""
SERVICES = """apiVersion: v1
kind: Service
metadata:
  name: demo
  namespace: demo
  annotations: {keepalived-operator.redhat-cop.io/keepalivedgroup: keepalived-operator/g}
spec: {type: LoadBalancer, externalIPs: [172.21.6.50], ports: [{port: 80, protocol: TCP}]}
"""
LONG = "x" * 10_000

Make = Callable[[Path], list[str]]
# The cases that run the real command (see the module's docstring).
AS_A_USER = {"scalar-string", "fifo", "probe-a-fifo", "failover-under-a-file", "binary"}
AS_A_USER_NUMBERS = 1  # the first NUMBERS case


def kalab(request: pytest.FixtureRequest, *argv: str) -> subprocess.CompletedProcess[str]:
    """The command for this case: a real `python -m kalab` for the AS_A_USER ones, else in this process."""
    case = request.node.callspec.id
    if case in AS_A_USER:
        return run_kalab(*argv, timeout=60)  # a FIFO must not block: the timeout would raise
    return run_kalab_here(*argv)


def _file(tmp: Path, name: str, content: str | bytes) -> Path:
    path = tmp / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def group_file(content: str | bytes) -> Make:
    """`render keepalived-conf` with `content` as the group file and good Services."""
    return lambda tmp: [
        "render",
        "keepalived-conf",
        "--group",
        str(_file(tmp, "g.yaml", content)),
        "--services",
        str(_file(tmp, "s.yaml", SERVICES)),
    ]


def services_file(content: str) -> Make:
    return lambda tmp: [
        "render",
        "keepalived-conf",
        "--group",
        str(_file(tmp, "g.yaml", GROUP)),
        "--services",
        str(_file(tmp, "s.yaml", content)),
    ]


def group_path(make_path: Callable[[Path], Path]) -> Make:
    return lambda tmp: [
        "render",
        "keepalived-conf",
        "--group",
        str(make_path(tmp)),
        "--services",
        str(_file(tmp, "s.yaml", SERVICES)),
    ]


def _fifo(tmp: Path) -> Path:
    path = tmp / "fifo.yaml"
    os.mkfifo(path)
    return path


def _dir(tmp: Path) -> Path:
    (tmp / "adir").mkdir()
    return tmp / "adir"


def _group(old: str, new: str) -> Make:
    return group_file(GROUP.replace(old, new))


def _services(old: str, new: str) -> Make:
    return services_file(SERVICES.replace(old, new))


SPEC = "{interface: ens3}"
INPUT_FILES: list[tuple[str, Make, str]] = [
    ("scalar-string", group_file("hello\n"), "holds a string (hello) where a Kubernetes object"),
    ("scalar-number", group_file("42\n"), "holds a number (42) where a Kubernetes object"),
    ("list-items-not-list", group_file("kind: List\nitems: 5\n"), "whose items is not a list"),
    ("list-items-numbers", group_file("kind: List\nitems: [1, 2]\n"), "holds a number (1) where"),
    ("bare-list-of-strings", group_file("- a\n- b\n"), "holds a string (a) where"),
    ("binary", group_file(b"\x00\x01\xff\xfe\x80binary"), "is not UTF-8 text"),
    ("control-characters", group_file(b"kind: \x01\x02\n"), "is not valid YAML"),
    ("empty", group_file(""), "holds no objects"),
    ("only-comments", group_file("# nothing\n---\n"), "holds no objects"),
    ("bad-syntax", group_file("kind: [unclosed\n"), "is not valid YAML at line"),
    ("directory", group_path(_dir), "is a directory"),
    ("fifo", group_path(_fifo), "is not a regular file"),
    ("missing", group_path(lambda tmp: tmp / "nope.yaml"), "does not exist"),
    ("spec-string", _group(f"spec: {SPEC}", 'spec: "x"'), 'has spec = "x", but it must be a map'),
    ("metadata-number", _group("metadata: {name: g, namespace: keepalived-operator}", "metadata: 5"), "metadata = 5"),
    ("interface-number", _group("interface: ens3", "interface: 5"), "has spec.interface = 5, but it must be a string"),
    ("unicast-string", _group(SPEC, "{interface: ens3, unicastEnabled: yes-please}"), "spec.unicastEnabled"),
    ("blacklist-range", _group(SPEC, "{interface: ens3, blacklistRouterIDs: [9999]}"), "spec.blacklistRouterIDs[0]"),
    ("kind-not-string", group_file("kind: [a]\n"), "kind is not a string"),
    ("service-spec-string", _services("spec: {type", 'spec: "x"\nx: {type'), 'has spec = "x", but it must be a map'),
    ("service-externalips-string", _services("[172.21.6.50]", "172.21.6.50"), "spec.externalIPs"),
    ("service-ports-number", _services("[{port: 80, protocol: TCP}]", "5"), "spec.ports = 5, but it must be a list"),
    ("service-port-string", _services("port: 80", "port: eighty"), "spec.ports[0].port"),
    ("service-labels-list", _services("  name: demo\n", "  name: demo\n  labels: [a]\n"), "metadata.labels"),
    ("service-status-number", services_file(SERVICES + "status: 5\n"), "has status = 5"),
    ("long-path", group_path(lambda tmp: tmp / LONG), "characters)"),
    ("long-kind", group_file(f"kind: {LONG}\n"), "characters) where a KeepalivedGroup was expected"),
    ("long-previous-ids", lambda tmp: [*group_file(GROUP)(tmp), "--previous-router-ids", "a " + LONG], "neither"),
]


@pytest.mark.parametrize(("make", "expected"), [c[1:] for c in INPUT_FILES], ids=[c[0] for c in INPUT_FILES])
def test_bad_input_file_is_one_sentence(
    request: pytest.FixtureRequest, tmp_path: Path, make: Make, expected: str
) -> None:
    argv = make(tmp_path)
    before = sorted(tmp_path.iterdir())
    result = kalab(request, *argv)
    line = _one_sentence(result)
    assert expected in line
    assert result.stdout == ""  # nothing rendered from a bad file
    assert sorted(tmp_path.iterdir()) == before


def _one_sentence(result: object) -> str:
    assert isinstance(result, subprocess.CompletedProcess)
    assert result.returncode != 0, result.stdout
    line: str = one_stderr_line(result)
    assert line.startswith("kalab") and line.endswith("."), line
    assert len(line) < 400, line  # values are shortened: a 10k-character one is not echoed whole
    return line


GRACEFUL = ["failover", "--kind", "graceful"]
NUMBERS: list[tuple[list[str], str]] = [
    ([*GRACEFUL, "--advert-int", "inf", "--vrrp-version", "3"], "--advert-int: 'inf' is not a finite"),
    ([*GRACEFUL, "--advert-int", "nan", "--vrrp-version", "3"], "--advert-int: 'nan' is not a finite"),
    ([*GRACEFUL, "--advert-int", "1e308", "--vrrp-version", "3"], "longer than VRRP v3 can carry"),
    ([*GRACEFUL, "--advert-int", "1e308"], "longer than VRRP v2 can carry"),
    (["failover", "--kind", "crash", "--rate", "NaN"], "--rate: 'NaN' is not a finite number"),
    (["probe", "http://172.21.6.50/", "--for", "nan"], "--for: 'nan' is not a finite number"),
    (["probe", "http://172.21.6.50/", "--for", "1", "--rate", "inf"], "--rate: 'inf' is not a finite number"),
    (["probe", "http://172.21.6.50/", "--for", "1", "--timeout", "Infinity"], "--timeout: 'Infinity' is not a finite"),
    (["probe", "http://172.21.6.50/", "--for", "9" * 400], "is not a finite number"),
    (["probe", "http://172.21.6.50/", "--for", LONG], "is not a number"),
    (["run", "--timeout", "inf"], "--timeout: 'inf' is not a finite number"),
    (["failover", "--kind", LONG], "characters)"),
]  # fmt: skip


@pytest.mark.parametrize(("argv", "expected"), NUMBERS, ids=lambda v: " ".join(v)[:60] if isinstance(v, list) else "")
def test_number_that_is_not_finite_is_refused_before_anything_starts(argv: list[str], expected: str) -> None:
    result = run_kalab(*argv, timeout=60) if argv == NUMBERS[0][0] else run_kalab_here(*argv)
    line = _one_sentence(result)
    assert expected in line
    assert result.stdout == ""


UNKNOWN: list[tuple[list[str], str]] = [
    (["lab", "down", "--prefix", ""], "down: error: Unrecognized arguments: --prefix ''; see `kalab lab down --help`."),
    (["run", "01"], "kalab run: error: Unrecognized arguments: 01; see `kalab run --help`."),
    (["cidr", "plan", "--bogus"], "see `kalab cidr plan --help`."),
    (["render", "keepalived-conf", "--group", "g", "--services", "s", "x"], "`kalab render keepalived-conf --help`"),
    (["doctor", LONG], "characters)"),
]  # fmt: skip


@pytest.mark.parametrize(("argv", "expected"), UNKNOWN, ids=lambda v: " ".join(v)[:40] if isinstance(v, list) else "")
def test_an_unknown_argument_points_at_that_commands_own_help(argv: list[str], expected: str) -> None:
    # argparse reports leftovers from the top parser; `kalab --help` would not list the option that was mistyped.
    result = run_kalab_here(*argv)
    line = _one_sentence(result)
    assert expected in line
    assert result.stdout == ""


KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{name: x, cluster: {server: "https://127.0.0.1:1"}}]
contexts: [{name: lab, context: {cluster: x, user: u}}, {name: other, context: {cluster: x, user: u}}]
current-context: lab
users: [{name: u, user: {token: t}}]
"""
KUBECONFIGS: list[tuple[str, Callable[[Path], Path], str]] = [
    ("binary", lambda tmp: _file(tmp, "kc", b"\x00\x01\xff\xfe"), "is not UTF-8 text"),
    ("scalar", lambda tmp: _file(tmp, "kc", "42\n"), "is not a kubeconfig"),
    ("malformed", lambda tmp: _file(tmp, "kc", "clusters: [\n"), "is not valid YAML at line 2"),
    ("control-characters", lambda tmp: _file(tmp, "kc", b"clusters: \x07\n"), "is not valid YAML"),
    ("contexts-number", lambda tmp: _file(tmp, "kc", "kind: Config\ncontexts: 5\n"), "contexts field that is not"),
    ("clusters-5", lambda tmp: _file(tmp, "kc", re.sub("clusters: .*", "clusters: 5", KUBECONFIG)), "cannot be used"),
    ("no-contexts", lambda tmp: _file(tmp, "kc", "kind: Config\n"), "cannot be used"),
    ("directory", _dir, "is a directory"),
    ("fifo", _fifo, "is not a regular file"),
    ("missing", lambda tmp: tmp / "nope", "No kubeconfig at"),
]  # fmt: skip


@pytest.mark.parametrize(("make", "expected"), [c[1:] for c in KUBECONFIGS], ids=[c[0] for c in KUBECONFIGS])
def test_bad_kubeconfig_is_one_sentence(
    request: pytest.FixtureRequest, tmp_path: Path, make: Callable[[Path], Path], expected: str
) -> None:
    result = kalab(request, *GRACEFUL, "--kubeconfig", str(make(tmp_path)))
    line = _one_sentence(result)
    assert expected in line
    assert result.stdout == ""


def test_wrong_context_lists_the_contexts_there_are(tmp_path: Path) -> None:
    with pytest.raises(KalabError) as err:
        connect(_file(tmp_path, "kc", KUBECONFIG), context="nope" + LONG)
    text = one_sentence(err)
    assert 'has no context "nope' in text and text.endswith("pick one of: lab, other.")
    assert len(text) < 400


PROBE = ["probe", "http://172.21.6.50/", "--for", "1"]
# /proc looks writable to root, so only trying to create the folder refuses it there; anyone else is told at once.
IN_PROC = "cannot be created" if os.geteuid() == 0 else "/proc is read-only to you"
OUT_PATHS: list[tuple[str, Callable[[Path], list[str]], str]] = [
    ("failover-under-a-file", lambda tmp: [*GRACEFUL, "--out", "/etc/hostname/sub"], "/etc/hostname is a file"),
    ("failover-deep-under-a-file", lambda tmp: [*GRACEFUL, "--out", str(_file(tmp, "f", "x") / "a/b")], "is a file"),
    ("failover-a-file", lambda tmp: [*GRACEFUL, "--out", str(_file(tmp, "f", "x"))], "is a file, not a directory"),
    ("failover-in-proc", lambda tmp: [*GRACEFUL, "--out", "/proc/kalab-no/such"], IN_PROC),
    ("probe-a-directory", lambda tmp: [*PROBE, "--out", str(_dir(tmp))], "is a directory"),
    ("probe-a-fifo", lambda tmp: [*PROBE, "--out", str(_fifo(tmp))], "not a regular file"),
    ("probe-no-folder", lambda tmp: [*PROBE, "--out", str(tmp / "no" / "p.csv")], "create it first"),
    ("run-a-file", lambda tmp: ["run", "--out", str(_file(tmp, "f", "x"))], "is a file, not a directory"),
    ("run-under-a-file", lambda tmp: ["run", "--out", str(_file(tmp, "f", "x") / "sub")], "is a file"),
]  # fmt: skip


@pytest.mark.parametrize(("make", "expected"), [c[1:] for c in OUT_PATHS], ids=[c[0] for c in OUT_PATHS])
def test_bad_output_path_fails_before_any_work(
    request: pytest.FixtureRequest, tmp_path: Path, make: Callable[[Path], list[str]], expected: str
) -> None:
    argv = make(tmp_path)
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")}
    result = kalab(request, *argv)
    line = _one_sentence(result)
    assert expected in line
    assert result.stdout == ""
    assert "building" not in result.stderr and "trial" not in result.stderr  # no work started
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")} == before  # nothing created or touched
    assert not Path("/proc/kalab-no").exists()


def test_results_are_written_whole_or_not_at_all(tmp_path: Path) -> None:
    from kalab.cli.output import atomic_path, write_text_atomic

    target = tmp_path / "summary.json"
    write_text_atomic(target, "old\n")
    with pytest.raises(KeyboardInterrupt), atomic_path(target) as temp:
        temp.write_text("half of the ne", encoding="utf-8")
        raise KeyboardInterrupt
    assert target.read_text(encoding="utf-8") == "old\n"  # the interruption left the old file whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]  # and no temporary file
    write_text_atomic(target, "new\n")
    assert target.read_text(encoding="utf-8") == "new\n"
    assert target.stat().st_mode & 0o777 == 0o666 & ~_umask()  # the mode a plain write gives


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
