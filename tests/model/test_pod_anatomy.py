"""The seed's keepalived pod, read back as a table of what makes it special."""

import copy
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from kalab.model.errors import KalabError
from kalab.model.pod_anatomy import command_line, pod_anatomy, pod_summary


@pytest.fixture
def pod(fixtures: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((fixtures / "seed_keepalived_pod.yaml").read_text())
    return loaded


def _rows(table: pd.DataFrame, aspect: str) -> pd.DataFrame:
    return table[table["aspect"] == aspect]


def _snake_keys(obj: Any, user_maps: bool = False) -> Any:
    """The kubernetes client's to_dict() spelling: snake_case fields, user maps (labels, selectors) untouched."""
    if isinstance(obj, list):
        return [_snake_keys(v) for v in obj]
    if not isinstance(obj, dict) or user_maps:
        return obj
    out = {}
    for key, value in obj.items():
        snake = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", key).lower()
        out[snake] = _snake_keys(value, user_maps=key in ("annotations", "labels", "nodeSelector"))
    return out


def test_seed_pod_is_host_network_with_a_shared_pid_namespace(pod: dict[str, Any]) -> None:
    table = pod_anatomy(pod)
    assert list(table.columns) == ["aspect", "container", "detail", "why_it_matters"]
    assert _rows(table, "hostNetwork")["detail"].tolist() == ["true"]
    assert _rows(table, "shareProcessNamespace")["detail"].tolist() == ["true"]
    assert _rows(table, "automountServiceAccountToken")["detail"].tolist() == ["false"]
    assert table["why_it_matters"].str.len().min() > 20


def test_seed_pod_has_two_privileged_containers(pod: dict[str, Any]) -> None:
    privileged = _rows(pod_anatomy(pod), "privileged")
    assert sorted(privileged["container"]) == ["keepalived", "prometheus-exporter"]
    root = _rows(pod_anatomy(pod), "runAsUser")
    assert sorted(root["container"]) == ["config-reloader", "config-setup"]


def test_seed_pod_exporter_listens_on_host_port_9650(pod: dict[str, Any]) -> None:
    [(container, detail)] = _rows(pod_anatomy(pod), "hostPort")[["container", "detail"]].values.tolist()
    assert container == "prometheus-exporter"
    assert "hostPort 9650" in detail


def test_seed_pod_volumes(pod: dict[str, Any]) -> None:
    table = pod_anatomy(pod)
    [host_path] = _rows(table, "hostPath volume")["detail"]
    assert host_path.startswith("lib-modules: /lib/modules")
    empty = _rows(table, "emptyDir volume")["detail"].tolist()
    assert [d for d in empty if d.startswith("pid")] == [
        "pid, medium Memory (mounted by keepalived at /etc/keepalived.pid; config-reloader at /etc/keepalived.pid)"
    ]
    assert any(d.startswith("stats") and "/tmp" in d for d in empty)
    [config_map] = _rows(table, "configMap volume")["detail"]
    assert "ConfigMap keepalivedgroup-workers" in config_map


def test_seed_pod_keepalived_command_line_is_the_exec_d_program(pod: dict[str, Any]) -> None:
    commands = _rows(pod_anatomy(pod), "command").set_index("container")["detail"]
    assert commands["keepalived"] == (
        "/usr/sbin/keepalived --log-console --log-detail --dont-fork --config-id=${POD_NAME} "
        "--use-file=/etc/keepalived.d/keepalived.conf --pid=/etc/keepalived.pid/keepalived.pid"
    )
    assert commands["prometheus-exporter"] == (
        "/usr/local/bin/keepalived_exporter -web.listen-address :9650 -web.telemetry-path /metrics"
    )
    assert commands["config-reloader"] == "/usr/local/bin/notify.sh"


def test_seed_pod_init_container_env_placement_and_scc(pod: dict[str, Any]) -> None:
    table = pod_anatomy(pod)
    assert _rows(table, "initContainer")["container"].tolist() == ["config-setup"]
    assert _rows(table, "env fieldRef")[["container", "detail"]].values.tolist() == [
        ["keepalived", "POD_NAME ← metadata.name"]
    ]
    assert _rows(table, "nodeSelector")["detail"].tolist() == ['node-role.kubernetes.io/loadbalancer=""']
    assert _rows(table, "toleration")["detail"].tolist() == ["operator: Exists (no key)"]
    assert _rows(table, "scc")["detail"].tolist() == ["openshift.io/scc: privileged"]


def test_pod_summary(pod: dict[str, Any]) -> None:
    assert pod_summary(pod) == {
        "name": "keepalivedgroup-workers-fgzv8",
        "namespace": "keepalived-operator",
        "node": "master-1",
        "hostIP": "192.168.7.14",
        "podIP": "192.168.7.14",
        "phase": "Running",
        "ready": "3/3",
        "restarts": 0,
    }


def test_snake_case_dicts_from_the_kubernetes_client_give_the_same_table(pod: dict[str, Any]) -> None:
    snake = _snake_keys(pod)
    assert "host_network" in snake["spec"] and "openshift.io/scc" in snake["metadata"]["annotations"]
    pd.testing.assert_frame_equal(pod_anatomy(snake), pod_anatomy(pod))
    assert pod_summary(snake) == pod_summary(pod)


def test_an_ordinary_pod_has_almost_nothing_special() -> None:
    plain = {"kind": "Pod", "metadata": {"name": "test-0"}, "spec": {"containers": [{"name": "php", "image": "x"}]}}
    table = pod_anatomy(plain)
    assert table["aspect"].tolist() == ["command"]
    assert pod_summary(plain)["ready"] == "0/1"


def test_losing_privileges_removes_rows(pod: dict[str, Any]) -> None:
    changed = copy.deepcopy(pod)
    changed["spec"]["hostNetwork"] = False
    changed["spec"]["containers"][0]["securityContext"] = {"capabilities": {"add": ["NET_ADMIN", "NET_RAW"]}}
    table = pod_anatomy(changed)
    assert _rows(table, "hostNetwork").empty
    assert _rows(table, "privileged")["container"].tolist() == ["prometheus-exporter"]
    assert _rows(table, "capabilities")["detail"].tolist() == ["NET_ADMIN, NET_RAW"]


def test_command_line_without_a_shell_quotes_arguments_with_spaces() -> None:
    assert command_line({"command": ["/bin/app", "--name", "a b"]}) == "/bin/app --name 'a b'"
    assert command_line({"command": ["sh", "-c", "exec  sleep\n 5\n"]}) == "sleep 5"


@pytest.mark.parametrize("obj", [{"kind": "Service", "spec": {}}, {"metadata": {}}, {"kind": "Pod", "spec": []}])
def test_not_a_pod_is_one_sentence(obj: dict[str, Any]) -> None:
    with pytest.raises(KalabError, match=r"^Expected a Pod but got (a Service|an object without a spec);"):
        pod_anatomy(obj)
