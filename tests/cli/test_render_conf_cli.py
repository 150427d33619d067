"""`kalab render keepalived-conf`: config plus status.routerIDs, JSON mode, and one-sentence errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from kalab.cli.render_conf import STATUS_SEPARATOR

OPERATOR = Path(__file__).resolve().parents[1] / "fixtures" / "operator"
GROUP = str(OPERATOR / "keepalivedgroup-workers.yaml")
SERVICES = str(OPERATOR / "demo-service.yaml")
PODS = str(OPERATOR / "keepalived-pods.yaml")


def kalab(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kalab", "render", "keepalived-conf", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def write(path: Path, *docs: Any) -> str:
    path.write_text(yaml.safe_dump_all(docs))
    return str(path)


def assert_one_sentence_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode == 1, result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("kalab: error: ")
    for fragment in fragments:
        assert fragment in result.stderr


def test_prints_the_config_then_the_router_ids() -> None:
    result = kalab("--group", GROUP, "--services", SERVICES, "--pods", PODS)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    config, status = result.stdout.split(STATUS_SEPARATOR + "\n")
    assert "vrrp_instance demo/demo {" in config
    assert "        172.21.6.50\n" in config
    assert "status" not in config
    assert yaml.safe_load(status) == {"status": {"routerIDs": {"demo/demo": 1}}}


def test_json_mode_is_one_object() -> None:
    result = kalab("--group", GROUP, "--services", SERVICES, "--json")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert set(out) == {"config", "status"}
    assert out["config"].startswith("# keepalived.conf of KeepalivedGroup keepalived-operator/keepalivedgroup-workers")
    assert out["status"] == {"routerIDs": {"demo/demo": 1}}


def test_previous_router_ids_inline_or_from_a_file(tmp_path: Path) -> None:
    inline = kalab("--group", GROUP, "--services", SERVICES, "--json", "--previous-router-ids", '{"demo/demo": 42}')
    assert json.loads(inline.stdout)["status"]["routerIDs"] == {"demo/demo": 42}
    status_file = tmp_path / "status.yaml"
    status_file.write_text("status:\n  routerIDs:\n    demo/demo: 17\n    gone/svc: 3\n")
    from_file = kalab("--group", GROUP, "--services", SERVICES, "--json", "--previous-router-ids", str(status_file))
    assert from_file.returncode == 0, from_file.stderr
    assert json.loads(from_file.stdout)["status"]["routerIDs"] == {"demo/demo": 17}


def test_password_and_its_truncation_warning(tmp_path: Path) -> None:
    group = yaml.safe_load(Path(GROUP).read_text())
    group["spec"]["passwordAuth"] = {"secretRef": {"name": "keepalived-secret"}}
    path = write(tmp_path / "group.yaml", group)
    result = kalab("--group", path, "--services", SERVICES, "--password", "0123456789")
    assert result.returncode == 0, result.stderr
    assert "auth_pass 01234567\n" in result.stdout
    assert result.stderr.startswith("kalab: warning: ")
    assert "Traceback" not in result.stderr


def test_spreadvips_with_pods_from_a_list_file(tmp_path: Path) -> None:
    svc = yaml.safe_load(Path(SERVICES).read_text())
    svc["metadata"]["annotations"]["keepalived-operator.redhat-cop.io/spreadvips"] = "true"
    svc["spec"]["externalIPs"].append("172.21.6.51")
    path = write(tmp_path / "svc.yaml", svc)
    result = kalab("--group", GROUP, "--services", path, "--pods", PODS, "--json")
    out = json.loads(result.stdout)
    assert out["status"]["routerIDs"] == {"demo/demo/172.21.6.50": 1, "demo/demo/172.21.6.51": 2}
    assert "@keepalivedgroup-workers-q7xlp state MASTER" in out["config"]


@pytest.mark.parametrize(
    ("flag", "fragments"),
    [
        ("--group", ("holds a Service where a KeepalivedGroup was expected",)),
        ("--pods", ("holds a Service where a Pod was expected",)),
    ],
)
def test_wrong_kind_in_a_file(flag: str, fragments: tuple[str, ...]) -> None:
    args = {"--group": GROUP, "--services": SERVICES, "--pods": PODS}
    args[flag] = SERVICES
    result = kalab(*(item for pair in args.items() for item in pair))
    assert_one_sentence_error(result, *fragments)


def test_a_group_in_the_services_file_is_the_wrong_kind() -> None:
    assert_one_sentence_error(kalab("--group", GROUP, "--services", GROUP), "where a Service was expected")


def test_missing_file() -> None:
    assert_one_sentence_error(kalab("--group", "/nonexistent/g.yaml", "--services", SERVICES), "does not exist")


def test_bad_yaml(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: Service\nmetadata: {name: [\n")
    assert_one_sentence_error(kalab("--group", GROUP, "--services", str(bad)), "is not valid YAML")


def test_two_groups_in_one_file(tmp_path: Path) -> None:
    group = yaml.safe_load(Path(GROUP).read_text())
    path = write(tmp_path / "groups.yaml", group, group)
    assert_one_sentence_error(kalab("--group", path, "--services", SERVICES), "exactly one")


def test_bad_verbatim_annotation_names_the_service(tmp_path: Path) -> None:
    svc = yaml.safe_load(Path(SERVICES).read_text())
    svc["metadata"]["annotations"]["keepalived-operator.redhat-cop.io/verbatimconfig"] = "{not json"
    path = write(tmp_path / "svc.yaml", svc)
    assert_one_sentence_error(kalab("--group", GROUP, "--services", path), "Service demo/demo", "not valid JSON")


@pytest.mark.parametrize("value", ["{bad", '{"demo/demo": "one"}', "/nonexistent/ids.json"])
def test_bad_previous_router_ids(value: str) -> None:
    result = kalab("--group", GROUP, "--services", SERVICES, "--previous-router-ids", value)
    assert_one_sentence_error(result, "--previous-router-ids")


def test_password_auth_without_password(tmp_path: Path) -> None:
    group = yaml.safe_load(Path(GROUP).read_text())
    group["spec"]["passwordAuth"] = {"secretRef": {"name": "keepalived-secret"}}
    path = write(tmp_path / "group.yaml", group)
    assert_one_sentence_error(kalab("--group", path, "--services", SERVICES), "no password was given")


def test_missing_required_option_is_a_usage_error() -> None:
    result = kalab("--group", GROUP)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "--services" in result.stderr
