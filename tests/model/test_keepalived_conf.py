"""The operator's keepalived.conf: every FACTS.md §2 feature, and the real keepalived accepting each variant."""

from __future__ import annotations

import copy
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from kalab.model.errors import KalabError
from kalab.model.keepalived_conf import INTERFACE_PLACEHOLDER, RenderedConfig, render_config, resolve_interface
from kalab.model.operator import GROUP_ANNOTATION, SPREADVIPS_ANNOTATION, VERBATIM_ANNOTATION
from tests.support.markers import needs_root_tools
from tests.support.netns import netns, run_in

OPERATOR = Path(__file__).resolve().parents[1] / "fixtures" / "operator"
POD_1 = "keepalivedgroup-workers-fgzv8"  # master-1, 192.168.7.14
POD_2 = "keepalivedgroup-workers-q7xlp"  # master-2, 192.168.7.15


def load(name: str) -> Any:
    return yaml.safe_load((OPERATOR / name).read_text())


def group(**spec: Any) -> dict[str, Any]:
    obj: dict[str, Any] = load("keepalivedgroup-workers.yaml")
    obj["spec"].update(spec)
    return obj


def demo(**spec: Any) -> dict[str, Any]:
    obj: dict[str, Any] = load("demo-service.yaml")
    obj["spec"].update(spec)
    return obj


def pods(count: int = 2) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = load("keepalived-pods.yaml")["items"]
    return items[:count]


def annotate(svc: dict[str, Any], **notes: str) -> dict[str, Any]:
    keys = {"spread": SPREADVIPS_ANNOTATION, "verbatim": VERBATIM_ANNOTATION, "group": GROUP_ANNOTATION}
    svc["metadata"]["annotations"].update({keys[k]: v for k, v in notes.items()})
    return svc


def spread_demo(*extra_vips: str) -> dict[str, Any]:
    svc = annotate(demo(), spread="true")
    svc["spec"]["externalIPs"] += list(extra_vips)
    return svc


def local_demo(port: int = 32100) -> dict[str, Any]:
    return demo(externalTrafficPolicy="Local", healthCheckNodePort=port)


def block(text: str, header: str) -> str:
    """The body of the top-level block starting with `header {` (blocks are rendered one level deep)."""
    match = re.search(rf"^{re.escape(header)} {{\n(.*?)^}}\n", text, flags=re.M | re.S)
    assert match, f"no block {header!r} in:\n{text}"
    return match.group(1)


def lines(body: str) -> list[str]:
    return [line.strip() for line in body.splitlines()]


# --- the seed's case ------------------------------------------------------------------------------------


def test_the_seed_demo_service_renders_one_instance() -> None:
    rendered = render_config(group(), [demo()], pods())
    assert lines(block(rendered.text, "global_defs")) == ["router_id keepalivedgroup-workers"]
    assert lines(block(rendered.text, "vrrp_instance demo/demo")) == [
        "interface eth0",
        "virtual_router_id 1",
        "virtual_ipaddress {",
        "172.21.6.50",
        "}",
    ]
    assert rendered.router_ids == {"demo/demo": 1}
    assert rendered.warnings == ()


def test_services_of_other_groups_or_without_vips_are_left_out() -> None:
    other = annotate(demo(), group="keepalived-operator/keepalivedgroup-edge")
    other["metadata"]["name"] = "other"
    pending = demo(externalIPs=[])
    pending["metadata"]["name"] = "pending"
    del pending["status"]
    rendered = render_config(group(), [other, pending, demo()])
    assert re.findall(r"^vrrp_instance (\S+)", rendered.text, flags=re.M) == ["demo/demo"]
    assert rendered.router_ids == {"demo/demo": 1}


def test_instances_are_sorted_and_router_ids_follow_status_and_blacklist() -> None:
    shop = demo(externalIPs=["172.21.6.51"])
    shop["metadata"].update(name="web", namespace="shop")
    del shop["status"]
    grp = group(blacklistRouterIDs=[1, 2])
    grp["status"] = {"routerIDs": {"shop/web": 9, "gone/svc": 3}}
    rendered = render_config(grp, [shop, demo()])
    assert re.findall(r"^vrrp_instance (\S+)", rendered.text, flags=re.M) == ["demo/demo", "shop/web"]
    assert rendered.router_ids == {"demo/demo": 3, "shop/web": 9}
    assert "virtual_router_id 9" in block(rendered.text, "vrrp_instance shop/web")
    # An explicit previous assignment overrides the group's status; {} starts afresh.
    assert render_config(grp, [shop, demo()], previous_router_ids={}).router_ids == {"demo/demo": 3, "shop/web": 4}


# --- interface ------------------------------------------------------------------------------------------


def test_interface_comes_from_the_group() -> None:
    rendered = render_config(group(interface="ens3"), [demo()])
    assert "interface ens3" in lines(block(rendered.text, "vrrp_instance demo/demo"))


def test_interface_from_ip_renders_a_placeholder_that_resolve_interface_replaces() -> None:
    grp = group(interfaceFromIP="192.168.7.1")
    svc = spread_demo("172.21.6.51")
    rendered = render_config(grp, [svc])
    assert rendered.text.count(f"interface {INTERFACE_PLACEHOLDER}") == 2
    assert "192.168.7.1" in rendered.text  # the header says which IP the node must route to
    resolved = resolve_interface(rendered.text, "br-ex")
    assert f"interface {INTERFACE_PLACEHOLDER}" not in resolved
    assert resolved.count("    interface br-ex\n") == 2
    # Everything else is untouched.
    assert resolved.replace("interface br-ex", f"interface {INTERFACE_PLACEHOLDER}") == rendered.text


@pytest.mark.parametrize("ifname", ["", "has space", "a/b", "sixteen-chars-xx"])
def test_resolve_interface_refuses_what_is_not_an_interface_name(ifname: str) -> None:
    with pytest.raises(KalabError, match="not a Linux interface name"):
        resolve_interface("vrrp_instance a/b {\n    interface x\n}\n", ifname)


def test_a_group_needs_an_interface_or_interface_from_ip() -> None:
    grp = group()
    del grp["spec"]["interface"]
    with pytest.raises(KalabError, match=r"neither spec\.interface nor spec\.interfaceFromIP"):
        render_config(grp, [demo()])
    with pytest.raises(KalabError, match="not an IPv4 address"):
        render_config(group(interfaceFromIP="fd00::1"), [demo()])


# --- unicast --------------------------------------------------------------------------------------------


def test_unicast_lists_every_keepalived_pods_host_ip() -> None:
    rendered = render_config(group(unicastEnabled=True), [demo()], pods())
    body = lines(block(rendered.text, "vrrp_instance demo/demo"))
    start = body.index("unicast_peer {")
    assert body[start : start + 4] == ["unicast_peer {", "192.168.7.14", "192.168.7.15", "}"]


def test_unicast_without_pods_renders_no_empty_peer_block() -> None:
    # keepalived flags an empty unicast_peer block (and falls back to multicast), so none is rendered.
    assert "unicast_peer" not in render_config(group(unicastEnabled=True), [demo()]).text
    unscheduled = copy.deepcopy(pods(1))
    del unscheduled[0]["status"]["hostIP"]
    assert "unicast_peer" not in render_config(group(unicastEnabled=True), [demo()], unscheduled).text


def test_unicast_off_ignores_pods() -> None:
    assert "unicast_peer" not in render_config(group(), [demo()], pods()).text


# --- password auth --------------------------------------------------------------------------------------

PASSWORD_AUTH = {"secretRef": {"name": "keepalived-secret"}, "secretKey": "password"}


def test_password_auth_renders_an_authentication_block() -> None:
    rendered = render_config(group(passwordAuth=PASSWORD_AUTH), [demo()], password="s3cret")
    body = lines(block(rendered.text, "vrrp_instance demo/demo"))
    start = body.index("authentication {")
    assert body[start : start + 4] == ["authentication {", "auth_type PASS", "auth_pass s3cret", "}"]
    assert rendered.warnings == ()


def test_a_long_password_is_truncated_to_8_characters_with_a_warning() -> None:
    rendered = render_config(group(passwordAuth=PASSWORD_AUTH), [demo()], password="0123456789abc")
    assert "auth_pass 01234567\n" in rendered.text
    assert any("only the first 8" in w for w in rendered.warnings)


def test_password_auth_without_a_password_names_the_secret() -> None:
    with pytest.raises(KalabError, match=r"key 'password' of Secret 'keepalived-secret'"):
        render_config(group(passwordAuth=PASSWORD_AUTH), [demo()])


@pytest.mark.parametrize("password", ["has space", 'quo"te', "#hash", "brace{", "naïve"])
def test_passwords_keepalived_cannot_carry_are_refused(password: str) -> None:
    with pytest.raises(KalabError, match="choose another password"):
        render_config(group(passwordAuth=PASSWORD_AUTH), [demo()], password=password)


def test_password_auth_and_vrrp_version_3_cannot_be_combined() -> None:
    grp = group(passwordAuth=PASSWORD_AUTH, verbatimConfig={"vrrp_version": "3"})
    with pytest.raises(KalabError, match="VRRP version 3, which has no authentication"):
        render_config(grp, [demo()], password="s3cret")


def test_a_password_without_password_auth_is_unused_and_said_so() -> None:
    rendered = render_config(group(), [demo()], password="s3cret")
    assert "authentication" not in rendered.text
    assert any("no passwordAuth" in w for w in rendered.warnings)


# --- verbatim config ------------------------------------------------------------------------------------


def test_group_verbatim_lines_go_into_global_defs() -> None:
    rendered = render_config(group(verbatimConfig={"vrrp_version": 3, "vrrp_garp_master_delay": "1"}), [demo()])
    assert lines(block(rendered.text, "global_defs")) == [
        "router_id keepalivedgroup-workers",
        "vrrp_garp_master_delay 1",
        "vrrp_version 3",
    ]


def test_service_verbatim_lines_come_last_in_the_instance() -> None:
    svc = annotate(demo(), verbatim='{"priority": "150", "advert_int": "2", "nopreempt": ""}')
    body = lines(block(render_config(group(), [svc]).text, "vrrp_instance demo/demo"))
    assert body[-3:] == ["advert_int 2", "nopreempt", "priority 150"]


def test_service_verbatim_cannot_override_what_the_operator_renders() -> None:
    svc = annotate(demo(), verbatim='{"virtual_router_id": "42"}')
    with pytest.raises(KalabError, match="Service demo/demo sets virtual_router_id"):
        render_config(group(), [svc])


def test_bad_verbatim_json_names_the_service() -> None:
    with pytest.raises(KalabError, match="Service demo/demo is not valid JSON"):
        render_config(group(), [annotate(demo(), verbatim="{nope")])


# --- spreadvips -----------------------------------------------------------------------------------------


def ownership(text: str, key: str) -> list[str]:
    return [line for line in lines(block(text, f"vrrp_instance {key}")) if line.startswith("@")]


def owner_lines(pod: str) -> list[str]:
    return [f"@{pod} state MASTER", f"@^{pod} state BACKUP", f"@{pod} priority 200", f"@^{pod} priority 100"]


def test_spreadvips_with_two_pods_alternates_owners() -> None:
    rendered = render_config(group(), [spread_demo("172.21.6.51", "172.21.6.52")], pods())
    assert rendered.router_ids == {"demo/demo/172.21.6.50": 1, "demo/demo/172.21.6.51": 2, "demo/demo/172.21.6.52": 3}
    assert ownership(rendered.text, "demo/demo/172.21.6.50") == owner_lines(POD_1)
    assert ownership(rendered.text, "demo/demo/172.21.6.51") == owner_lines(POD_2)
    assert ownership(rendered.text, "demo/demo/172.21.6.52") == owner_lines(POD_1)
    assert lines(block(rendered.text, "vrrp_instance demo/demo/172.21.6.51"))[3] == "172.21.6.51"


def test_spreadvips_owner_order_is_by_pod_name_not_input_order() -> None:
    rendered = render_config(group(), [spread_demo("172.21.6.51")], list(reversed(pods())))
    assert ownership(rendered.text, "demo/demo/172.21.6.50") == owner_lines(POD_1)


def test_spreadvips_with_one_pod_gives_it_every_vip() -> None:
    rendered = render_config(group(), [spread_demo("172.21.6.51")], pods(1))
    for key in rendered.router_ids:
        assert ownership(rendered.text, key) == owner_lines(POD_1)


def test_spreadvips_with_no_pods_still_assigns_and_renders_every_instance() -> None:
    rendered = render_config(group(), [spread_demo("172.21.6.51")])
    assert rendered.router_ids == {"demo/demo/172.21.6.50": 1, "demo/demo/172.21.6.51": 2}
    for key, router_id in rendered.router_ids.items():
        body = lines(block(rendered.text, f"vrrp_instance {key}"))
        assert f"virtual_router_id {router_id}" in body
        assert not [line for line in body if line.startswith("@")]


def test_spreadvips_services_cannot_set_state_verbatim() -> None:
    svc = annotate(spread_demo(), verbatim='{"state": "MASTER"}')
    with pytest.raises(KalabError, match="sets state"):
        render_config(group(), [svc], pods())


# --- externalTrafficPolicy Local ------------------------------------------------------------------------


def test_local_policy_adds_a_health_script_and_tracks_it() -> None:
    rendered = render_config(group(), [local_demo(32100)])
    script = lines(block(rendered.text, "vrrp_script demo/demo"))
    assert any("http://127.0.0.1:32100/health" in line and "curl" in line for line in script)
    assert {"timeout 10", "rise 3", "fall 3"} <= set(script)
    assert any(line.startswith("interval ") for line in script)
    body = lines(block(rendered.text, "vrrp_instance demo/demo"))
    start = body.index("track_script {")
    assert body[start : start + 3] == ["track_script {", "demo/demo", "}"]
    # keepalived 2.2.7 drops scripts without a script user and refuses them without script security.
    assert {"script_user root", "enable_script_security"} <= set(lines(block(rendered.text, "global_defs")))


def test_script_settings_appear_only_with_scripts_and_defer_to_the_group() -> None:
    assert "script_user" not in render_config(group(), [demo()]).text
    grp = group(verbatimConfig={"script_user": "nobody"})
    global_defs = lines(block(render_config(grp, [local_demo()]).text, "global_defs"))
    assert "script_user nobody" in global_defs
    assert "script_user root" not in global_defs


def test_spreadvips_instances_share_the_services_health_script() -> None:
    svc = spread_demo("172.21.6.51")
    svc["spec"].update(externalTrafficPolicy="Local", healthCheckNodePort=32100)
    rendered = render_config(group(), [svc], pods())
    assert rendered.text.count("vrrp_script ") == 1
    for key in rendered.router_ids:
        assert "demo/demo" in lines(block(rendered.text, f"vrrp_instance {key}"))


def test_local_policy_without_a_health_check_port_warns() -> None:
    rendered = render_config(group(), [demo(externalTrafficPolicy="Local")])
    assert "vrrp_script" not in rendered.text
    assert any("no healthCheckNodePort" in w for w in rendered.warnings)


def test_ipv6_vips_are_left_out_with_a_warning() -> None:
    rendered = render_config(group(), [demo(externalIPs=["172.21.6.50", "fd00::50"])])
    assert "fd00::50" not in rendered.text
    assert any("IPv6" in w for w in rendered.warnings)


def test_wrong_kind_for_the_group_is_one_sentence() -> None:
    with pytest.raises(KalabError, match="Expected a KeepalivedGroup"):
        render_config(demo(), [demo()])


# --- the real keepalived --------------------------------------------------------------------------------


def _everything() -> RenderedConfig:
    """Unicast, password, Local health check, spreadvips, group and service verbatim, two services."""
    grp = group(unicastEnabled=True, passwordAuth=PASSWORD_AUTH, blacklistRouterIDs=[1, 2, 3])
    grp["spec"]["verbatimConfig"] = {"vrrp_garp_master_delay": "1"}
    spread = spread_demo("172.21.6.51", "172.21.6.52")
    spread["spec"].update(externalTrafficPolicy="Local", healthCheckNodePort=32100)
    annotate(spread, verbatim='{"advert_int": "2"}')
    shop = local_demo(32101)
    shop["metadata"].update(name="web", namespace="shop")
    shop["spec"]["externalIPs"] = ["172.21.6.60"]
    del shop["status"]
    return render_config(grp, [shop, spread], pods(), password="averylongpassword")


VARIANTS: dict[str, Callable[[], RenderedConfig]] = {
    "seed-no-pods": lambda: render_config(group(), [demo()]),
    "seed-with-pods": lambda: render_config(group(), [demo()], pods()),
    "no-services": lambda: render_config(group(), []),
    "interface-from-ip": lambda: render_config(group(interfaceFromIP="192.168.7.1"), [spread_demo("172.21.6.51")]),
    "unicast-with-pods": lambda: render_config(group(unicastEnabled=True), [demo()], pods()),
    "unicast-no-pods": lambda: render_config(group(unicastEnabled=True), [demo()]),
    "password": lambda: render_config(group(passwordAuth=PASSWORD_AUTH), [demo()], password="s3cret"),
    "password-truncated": lambda: render_config(group(passwordAuth=PASSWORD_AUTH), [demo()], password="0123456789abc"),
    "group-verbatim-vrrp3": lambda: render_config(
        group(verbatimConfig={"vrrp_version": 3}), [annotate(demo(), verbatim='{"advert_int": "0.1"}')]
    ),
    "service-verbatim": lambda: render_config(
        group(), [annotate(demo(), verbatim='{"priority": "150", "advert_int": "2", "nopreempt": ""}')]
    ),
    "spread-no-pods": lambda: render_config(group(), [spread_demo("172.21.6.51", "172.21.6.52")]),
    "spread-one-pod": lambda: render_config(group(), [spread_demo("172.21.6.51", "172.21.6.52")], pods(1)),
    "spread-two-pods": lambda: render_config(group(), [spread_demo("172.21.6.51", "172.21.6.52")], pods()),
    "local-health": lambda: render_config(group(), [local_demo()]),
    "everything": _everything,
}


def keepalived_test(ns: str, conf: Path, config_id: str | None = None) -> subprocess.CompletedProcess[str]:
    argv = ["keepalived", "-t", "-f", str(conf)]
    if config_id:
        argv.insert(2, f"--config-id={config_id}")
    return run_in(ns, *argv, check=False)


@needs_root_tools("keepalived", "ip")
def test_the_real_keepalived_accepts_every_rendered_variant(tmp_path: Path) -> None:
    with netns("eth0") as ns:
        # The check can fail: a missing interface and an unresolved interfaceFromIP placeholder are refused.
        broken = tmp_path / "broken.conf"
        broken.write_text(render_config(group(interface="eth9"), [demo()]).text)
        assert keepalived_test(ns, broken).returncode != 0
        unresolved = tmp_path / "unresolved.conf"
        unresolved.write_text(VARIANTS["interface-from-ip"]().text)
        assert keepalived_test(ns, unresolved).returncode != 0

        failures = []
        for name, make in VARIANTS.items():
            text = make().text
            if INTERFACE_PLACEHOLDER in text:
                text = resolve_interface(text, "eth0")
            conf = tmp_path / f"{name}.conf"
            conf.write_text(text)
            # Each pod runs keepalived with --config-id=<pod>, which switches the @<pod> lines on or off.
            for config_id in (None, POD_1, POD_2, "not-a-pod"):
                result = keepalived_test(ns, conf, config_id)
                if result.returncode != 0:
                    failures.append(f"{name} (config-id {config_id}): rc {result.returncode}\n{result.stderr}")
        assert not failures, "\n".join(failures)


@needs_root_tools("keepalived", "ip")
def test_config_id_switches_the_spreadvips_lines(tmp_path: Path) -> None:
    # Proof that --config-id really selects lines: a bad priority on POD_1's line only hurts POD_1's keepalived.
    text = VARIANTS["spread-two-pods"]().text.replace(f"@{POD_1} priority 200", f"@{POD_1} priority 999", 1)
    conf = tmp_path / "spread.conf"
    conf.write_text(text)
    with netns("eth0") as ns:
        assert keepalived_test(ns, conf, POD_2).returncode == 0
        assert keepalived_test(ns, conf, POD_1).returncode != 0
