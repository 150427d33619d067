"""Everyday kubectl verbs against `kalab lab up`: auth can-i/whoami, rollout status, debug node."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kalab.lab import control
from kalab.model import manifests
from tests.support.labs import running_lab
from tests.support.markers import needs_lab_tools
from tests.support.waiting import wait_for

pytestmark = needs_lab_tools("keepalived", "iptables-restore", "ip", "curl")
LAB = "t-verbs"
KUBECTL = str(Path(sys.executable).with_name("kubectl"))
NS = "keepalived-operator"
GROUP = "keepalivedgroup-workers"
DEBUG_IMAGE = "registry.redhat.io/rhel8/support-tools"
MASTER_1_IP = "192.168.7.14"  # the seed's hostIP of master-1

Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="module")
def lab() -> Iterator[control.LabInfo]:
    with running_lab(LAB) as info:
        yield info


@pytest.fixture(scope="module")
def env(lab: control.LabInfo, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    home = tmp_path_factory.mktemp("kubectl-home")
    return {"PATH": os.environ.get("PATH", ""), "KUBECONFIG": str(lab.kubeconfig), "HOME": str(home)}


@pytest.fixture(scope="module")
def kubectl(env: dict[str, str]) -> Run:

    def run(*argv: str, stdin: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([KUBECTL, *argv], capture_output=True, text=True, timeout=timeout, env=env, input=stdin)

    return run


def ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, f"{done.args}: {done.stderr}"
    return done.stdout


def write(tmp_path: Path, name: str, docs: list[dict[str, Any]]) -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return str(path)


def test_can_i_answers_for_the_admin_and_for_service_accounts(kubectl: Run) -> None:
    assert ok(kubectl("auth", "can-i", "create", "pods")).strip() == "yes"
    assert ok(kubectl("auth", "can-i", "use", "scc/privileged")).strip() == "yes"
    who = ok(kubectl("auth", "whoami", "-o", "json"))
    assert json.loads(who)["status"]["userInfo"]["username"] == "system:admin"
    listed = ok(kubectl("auth", "can-i", "--list"))
    assert re.search(r"^\*\.\*\s+\[\]\s+\[\]\s+\[\*\]", listed, re.M), listed

    sa = "--as=system:serviceaccount:default:default"
    refused = kubectl("auth", "can-i", "create", "pods", sa, "-n", "default")
    assert (refused.returncode, refused.stdout.strip()) == (1, "no")
    refused = kubectl("auth", "can-i", "use", "scc/privileged", sa)
    assert (refused.returncode, refused.stdout.strip()) == (1, "no")
    own = ok(kubectl("auth", "can-i", "--list", sa, "-n", "default"))
    assert "selfsubjectaccessreviews.authorization.k8s.io" in own and "pods" not in own

    # What `oc adm policy add-scc-to-user privileged -z default -n default` writes on newer OpenShift.
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "default-privileged"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": "system:openshift:scc:privileged"},
        "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": "default"}],
    }  # fmt: skip
    ok(kubectl("apply", "-f", "-", stdin=json.dumps(binding)))
    assert ok(kubectl("auth", "can-i", "use", "scc/privileged", sa)).strip() == "yes"
    assert kubectl("auth", "can-i", "create", "pods", sa, "-n", "default").returncode == 1


def test_rollout_status_of_the_keepalived_daemonset_and_the_operator(kubectl: Run, tmp_path: Path) -> None:
    ok(kubectl("apply", "-f", write(tmp_path, "olm.yaml", manifests.olm_install())))
    wait_for(lambda: "Succeeded" in ok(kubectl("get", "csv", "-n", NS)) or None, 120, "the CSV to succeed")
    ok(kubectl("rollout", "status", "deploy/keepalived-operator", "-n", NS, "--timeout=120s"))
    for node in ("master-1", "master-2"):
        ok(kubectl("label", "node", node, "node-role.kubernetes.io/loadbalancer=", "--overwrite"))
    ok(kubectl("apply", "-f", write(tmp_path, "group.yaml", [manifests.keepalived_group(interface="kalab-eth0")])))
    ok(kubectl("patch", "scc", "privileged", "--type=json", "-p", json.dumps(manifests.scc_grant(form="users"))))
    wait_for(lambda: ok(kubectl("get", "ds", GROUP, "-n", NS, "--ignore-not-found")) or None, 60, "the DaemonSet")
    done = ok(kubectl("rollout", "status", f"ds/{GROUP}", "-n", NS, "--timeout=180s"))
    assert f'daemon set "{GROUP}" successfully rolled out' in done
    ds = json.loads(ok(kubectl("get", "ds", GROUP, "-n", NS, "-o", "json")))
    assert ds["spec"]["updateStrategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0},
    }
    status = ds["status"]
    assert status["observedGeneration"] == ds["metadata"]["generation"]
    assert status["desiredNumberScheduled"] == status["numberAvailable"] == status["updatedNumberScheduled"] == 2


def test_debug_node_interactive_shows_the_nodes_addresses(kubectl: Run) -> None:
    done = kubectl(
        "debug",
        "node/master-1",
        "-it",
        f"--image={DEBUG_IMAGE}",
        "--",
        "chroot",
        "/host",
        "ip",
        "addr",
        stdin="",
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    assert re.search(
        r"Creating debugging pod node-debugger-master-1-\w+ with container debugger", done.stdout + done.stderr
    )
    assert f"inet {MASTER_1_IP}/" in done.stdout


def test_debug_node_without_a_terminal_then_logs(kubectl: Run) -> None:
    created = ok(kubectl("debug", "node/master-1", f"--image={DEBUG_IMAGE}", "--", "chroot", "/host", "ip", "addr"))
    name = re.search(r"pod (node-debugger-master-1-\w+)", created)
    assert name is not None, created
    pod = name.group(1)
    wait_for(
        lambda: ok(kubectl("get", "pod", pod, "-o", "jsonpath={.status.phase}")) == "Succeeded" or None,
        120,
        "the debug pod to finish",
    )
    assert f"inet {MASTER_1_IP}/" in ok(kubectl("logs", pod))
    spec = json.loads(ok(kubectl("get", "pod", pod, "-o", "json")))
    # Admitted for the admin, who may use every SCC: the most restrictive one that allows the host's namespaces
    # and a host path (not privileged: kubectl's legacy debug profile asks for no privileged container).
    assert spec["metadata"]["annotations"]["openshift.io/scc"] == "hostaccess"


class Terminal:
    """kubectl on a pseudo-terminal, as an attendee types into it: read until something shows, then type."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.master, slave = pty.openpty()
        self.process = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True)
        os.close(slave)
        self.seen = b""

    def expect(self, pattern: str, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        while not re.search(pattern.encode(), self.seen):
            left = deadline - time.monotonic()
            assert left > 0, f"{pattern!r} never showed; the terminal shows:\n{self.seen.decode(errors='replace')}"
            if select.select([self.master], [], [], min(left, 1.0))[0]:
                try:
                    self.seen += os.read(self.master, 65536)
                except OSError:  # the other side is gone
                    assert re.search(pattern.encode(), self.seen), self.seen.decode(errors="replace")
        return self.seen.decode(errors="replace")

    def type(self, line: str) -> None:
        self.seen = b""
        os.write(self.master, line.encode() + b"\r")

    def close(self) -> int:
        try:
            return self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()  # ours, by its own handle
            self.process.wait(timeout=10)
            raise
        finally:
            os.close(self.master)


def test_debug_node_gives_a_shell_on_the_node(env: dict[str, str]) -> None:
    """`oc debug node/master-1` as the docs show it: a shell, `chroot /host`, then commands on the node."""
    terminal = Terminal([KUBECTL, "debug", "node/master-1", "-it", f"--image={DEBUG_IMAGE}"], env)
    try:
        terminal.expect(r"sh-5\.1# ")
        terminal.type("chroot /host")
        terminal.expect(r"sh-5\.1# ")
        terminal.type("ip -br addr show kalab-eth0")
        assert f"{MASTER_1_IP}/24" in terminal.expect(r"sh-5\.1# ")
        terminal.type("exit")
        terminal.expect(r"sh-5\.1# ")
        terminal.type("exit")
        terminal.expect("Session ended")
    finally:
        assert terminal.close() == 0


def test_a_service_account_may_not_create_the_debug_pod(kubectl: Run, tmp_path: Path) -> None:
    rbac = "rbac.authorization.k8s.io"
    setup = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "peek"}},
        {"apiVersion": f"{rbac}/v1", "kind": "Role", "metadata": {"name": "pod-maker", "namespace": "peek"},
         "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["create", "get", "list"]}]},
        {"apiVersion": f"{rbac}/v1", "kind": "RoleBinding", "metadata": {"name": "pod-maker", "namespace": "peek"},
         "roleRef": {"apiGroup": rbac, "kind": "Role", "name": "pod-maker"},
         "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": "peek"}]},
    ]  # fmt: skip
    ok(kubectl("apply", "-f", write(tmp_path, "setup.yaml", setup)))
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "host-peek", "namespace": "peek"},
        "spec": {
            "hostNetwork": True,
            "containers": [{"name": "debugger", "image": DEBUG_IMAGE, "command": ["ip", "addr"],
                            "volumeMounts": [{"name": "host-root", "mountPath": "/host"}]}],
            "volumes": [{"name": "host-root", "hostPath": {"path": "/"}}],
        },
    }  # fmt: skip
    path = write(tmp_path, "peek.yaml", [pod])
    sa = "--as=system:serviceaccount:peek:default"
    assert ok(kubectl("auth", "can-i", "create", "pods", sa, "-n", "peek")).strip() == "yes"
    refused = kubectl("create", "-f", path, sa)
    assert refused.returncode == 1
    assert "unable to validate against any security context constraint" in refused.stderr
