"""The keepalived.conf a KeepalivedGroup's ConfigMap carries (FACTS.md §2), checked against keepalived 2.2.7.

What `keepalived -t` taught us shapes a few choices here (FACTS.md §4 and the kernel-backed tests):
- a `vrrp_script` needs `script_user` (no `keepalived_script` user exists) and `enable_script_security`, or
  keepalived drops the script / reports a security violation; both are added only when there are scripts;
- an empty `unicast_peer {}` or `virtual_ipaddress {}` block is flagged, so neither is ever rendered;
- `auth_pass` longer than 8 characters is truncated with a warning: we truncate first and say so ourselves;
- VRRP version 3 has no authentication, and one instance cannot mix IPv4 and IPv6 addresses.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kalab.model import objects
from kalab.model.errors import KalabError
from kalab.model.operator import (
    instance_keys,
    instance_vips,
    ip_version,
    keepalived_pods,
    namespaced_name,
    pod_host_ip,
    pod_name,
    selected_services,
    service_vips,
    spreads_vips,
    verbatim_config,
    verbatim_lines,
)
from kalab.model.routerids import assign_router_ids

# What the interface line says until each node's config-setup resolves interfaceFromIP (see resolve_interface).
INTERFACE_PLACEHOLDER = "__FROM_IP__"
# VRRP simple-text authentication carries 8 bytes; keepalived truncates anything longer.
AUTH_PASS_MAX = 8
MASTER_PRIORITY = 200
BACKUP_PRIORITY = 100
HEALTH_INTERVAL = 2
HEALTH_TIMEOUT = 10
HEALTH_RISE = 3
HEALTH_FALL = 3
CURL = "/usr/bin/curl"
INDENT = "    "
# Linux interface names: at most 15 bytes, no slash or whitespace; the rest keeps the keepalived line intact.
_IFNAME = re.compile(r"^[^\s/:{}\"#!@]{1,15}$")
# Keywords the renderer writes into every instance; a verbatim duplicate would fight it or break a block.
_RESERVED_INSTANCE_KEYWORDS = frozenset(
    {"interface", "virtual_router_id", "virtual_ipaddress", "unicast_peer", "authentication", "track_script"}
)


@dataclass(frozen=True)
class RenderedConfig:
    """keepalived.conf text, the group's resulting status.routerIDs, and what the renderer had to adjust."""

    text: str
    router_ids: dict[str, int]
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class _ServicePlan:
    """What one selected Service contributes: its instance names, VIPs, health port and verbatim lines."""

    name: str
    keys: list[str]
    vips: list[str]
    spread: bool
    health_port: int | None
    verbatim: dict[str, str]


@dataclass
class _Context:
    """Per-render facts shared by every service's instances."""

    interface: str
    pods: list[dict[str, Any]]
    peers: list[str]
    password: str | None
    router_ids: dict[str, int]


def render_config(
    group: Mapping[str, Any],
    services: Iterable[Mapping[str, Any]],
    pods: Iterable[Mapping[str, Any]] = (),
    previous_router_ids: Mapping[str, int] | None = None,
    password: str | None = None,
) -> RenderedConfig:
    """Render the group's keepalived.conf.

    `previous_router_ids` defaults to the group's own status.routerIDs (pass `{}` to start afresh).
    `password` is the value of the group's passwordAuth Secret key; reading the Secret is the caller's job.
    """
    _check_group(group)
    warnings: list[str] = []
    plans = [_plan(svc, warnings) for svc in selected_services(group, services)]
    if previous_router_ids is None:
        previous_router_ids = _status_router_ids(group)
    keys = [key for plan in plans for key in plan.keys]
    router_ids = assign_router_ids(keys, previous_router_ids, _blacklist(group))
    group_pods = keepalived_pods(group, pods)
    ctx = _Context(
        interface=_interface(group),
        pods=group_pods,
        peers=_unicast_peers(objects.spec(group), group_pods),
        password=_auth_password(group, password, [plan.verbatim for plan in plans], warnings),
        router_ids=router_ids,
    )
    scripts = [_health_script(plan) for plan in plans if plan.vips and plan.health_port is not None]
    blocks = [_header(group), _global_defs(group, has_scripts=bool(scripts)), *scripts]
    blocks += [block for plan in plans for block in _instances(plan, ctx)]
    text = "\n".join("\n".join(block) + "\n" for block in blocks)
    return RenderedConfig(text=text, router_ids=router_ids, warnings=tuple(warnings))


def resolve_interface(text: str, ifname: str) -> str:
    """Point every instance's `interface` line at `ifname` (what `ip route get <interfaceFromIP>` names)."""
    _check_ifname(ifname, "The interface to resolve to")
    lines = []
    for line in text.splitlines(keepends=True):
        stripped = line.lstrip()
        if stripped.split(maxsplit=1)[:1] == ["interface"]:
            indent = line[: len(line) - len(stripped)]
            ending = "\n" if line.endswith("\n") else ""
            line = f"{indent}interface {ifname}{ending}"
        lines.append(line)
    return "".join(lines)


# --- the group ------------------------------------------------------------------------------------------


def _check_group(group: Mapping[str, Any]) -> None:
    if group.get("kind") != "KeepalivedGroup":
        raise KalabError(f"Expected a KeepalivedGroup but got kind {group.get('kind')!r}; pass the group object.")
    if not objects.name_of(group):
        raise KalabError("The KeepalivedGroup has no metadata.name; name the group.")


def _status_router_ids(group: Mapping[str, Any]) -> dict[str, int]:
    ids = objects.status(group).get("routerIDs")
    return dict(ids) if isinstance(ids, Mapping) else {}


def _blacklist(group: Mapping[str, Any]) -> list[int]:
    raw = objects.spec(group).get("blacklistRouterIDs") or []
    if not isinstance(raw, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in raw):
        raise KalabError(
            f"KeepalivedGroup {namespaced_name(group)} spec.blacklistRouterIDs must be a list of integers."
        )
    return list(raw)


def _interface(group: Mapping[str, Any]) -> str:
    """spec.interface, or the placeholder when interfaceFromIP asks each node to find its own interface."""
    spec = objects.spec(group)
    from_ip = spec.get("interfaceFromIP")
    if from_ip:
        try:
            ipaddress.IPv4Address(str(from_ip))
        except ValueError:
            raise KalabError(
                f"KeepalivedGroup {namespaced_name(group)} spec.interfaceFromIP is {from_ip!r}, "
                "not an IPv4 address; give the IPv4 address whose route names the interface."
            ) from None
        return INTERFACE_PLACEHOLDER
    interface = spec.get("interface")
    if not interface:
        raise KalabError(
            f"KeepalivedGroup {namespaced_name(group)} sets neither spec.interface nor spec.interfaceFromIP; "
            "set one of them."
        )
    _check_ifname(str(interface), f"KeepalivedGroup {namespaced_name(group)} spec.interface")
    return str(interface)


def _check_ifname(ifname: str, what: str) -> None:
    if not _IFNAME.match(ifname):
        raise KalabError(f"{what} is {ifname!r}, which is not a Linux interface name (1-15 characters, no spaces).")


def _unicast_peers(spec: Mapping[str, Any], pods: Sequence[Mapping[str, Any]]) -> list[str]:
    """Host IPs of the group's pods when unicast is on; pods not scheduled yet have none and are left out."""
    if spec.get("unicastEnabled") is not True:
        return []
    peers: list[str] = []
    for pod in pods:
        ip = pod_host_ip(pod)
        if ip and ip not in peers:
            peers.append(ip)
    return peers


def _auth_password(
    group: Mapping[str, Any], password: str | None, verbatims: Sequence[Mapping[str, str]], warnings: list[str]
) -> str | None:
    """The auth_pass to render, or None without passwordAuth; truncated to the 8 bytes VRRP carries."""
    name = namespaced_name(group)
    auth = objects.spec(group).get("passwordAuth")
    if not isinstance(auth, Mapping) or not auth:
        if password is not None:
            warnings.append(f"A password was given but KeepalivedGroup {name} has no passwordAuth; it is unused.")
        return None
    if _uses_vrrp3(group, verbatims):
        raise KalabError(
            f"KeepalivedGroup {name} asks for passwordAuth with VRRP version 3, which has no authentication; "
            "drop one of them."
        )
    secret = auth.get("secretRef", {}).get("name", "?") if isinstance(auth.get("secretRef"), Mapping) else "?"
    key = auth.get("secretKey") or "password"
    if not password:
        raise KalabError(
            f"KeepalivedGroup {name} uses passwordAuth but no password was given; "
            f"pass the value of key {key!r} of Secret {secret!r}."
        )
    if len(password) > AUTH_PASS_MAX:
        warnings.append(
            f"The password from Secret {secret!r} has {len(password)} characters; VRRP carries only the first "
            f"{AUTH_PASS_MAX}, so only those are rendered."
        )
        password = password[:AUTH_PASS_MAX]
    _check_password(password, name)
    return password


def _check_password(password: str, group_name: str) -> None:
    # keepalived splits words on whitespace, treats a leading '#' or '!' as a comment and quotes/braces as syntax.
    bad = any(not ("!" <= c <= "~") or c in '"{}' for c in password) or password[0] in "#!"
    if bad:
        raise KalabError(
            f"The passwordAuth password of KeepalivedGroup {group_name} has a character keepalived cannot carry "
            "(whitespace, quotes, braces, non-ASCII or a leading # or !); choose another password."
        )


def _uses_vrrp3(group: Mapping[str, Any], verbatims: Sequence[Mapping[str, str]]) -> bool:
    group_verbatim = _group_verbatim(group)
    if group_verbatim.get("vrrp_version") == "3":
        return True
    return any(v.get("version") == "3" for v in verbatims)


def _group_verbatim(group: Mapping[str, Any]) -> dict[str, str]:
    raw = objects.spec(group).get("verbatimConfig") or {}
    where = f"KeepalivedGroup {namespaced_name(group)} spec.verbatimConfig"
    if not isinstance(raw, Mapping):
        raise KalabError(f"{where} must be a map of keepalived keyword to value.")
    return verbatim_lines(raw, where)


# --- rendering ------------------------------------------------------------------------------------------


def _header(group: Mapping[str, Any]) -> list[str]:
    lines = [f"# keepalived.conf of KeepalivedGroup {namespaced_name(group)}"]
    from_ip = objects.spec(group).get("interfaceFromIP")
    if from_ip:
        lines.append(
            f"# {INTERFACE_PLACEHOLDER} stands for the interface each node routes {from_ip} through "
            "(interfaceFromIP); each node replaces it before keepalived starts."
        )
    return lines


def _global_defs(group: Mapping[str, Any], has_scripts: bool) -> list[str]:
    verbatim = _group_verbatim(group)
    lines = ["global_defs {", f"{INDENT}router_id {objects.name_of(group)}"]
    if has_scripts:
        # Without these keepalived 2.2.7 drops the health scripts (no `keepalived_script` user) or reports a
        # security violation; a group that sets them itself wins.
        if "script_user" not in verbatim:
            lines.append(f"{INDENT}script_user root")
        if "enable_script_security" not in verbatim:
            lines.append(f"{INDENT}enable_script_security")
    lines += [_keyword_line(key, value, 1) for key, value in sorted(verbatim.items())]
    lines.append("}")
    return lines


def _keyword_line(key: str, value: str, depth: int) -> str:
    return f"{INDENT * depth}{key} {value}".rstrip()


def _plan(svc: Mapping[str, Any], warnings: list[str]) -> _ServicePlan:
    name = namespaced_name(svc)
    spread = spreads_vips(svc)
    verbatim = verbatim_config(svc)
    reserved = _RESERVED_INSTANCE_KEYWORDS | ({"state"} if spread else set())
    clash = sorted(set(verbatim) & reserved)
    if clash:
        raise KalabError(
            f"The verbatim config of Service {name} sets {', '.join(clash)}, which the operator renders itself; "
            "remove it from the annotation."
        )
    ipv6 = [vip for vip in service_vips(svc) if ip_version(vip) == 6]
    if ipv6:
        warnings.append(
            f"Service {name} has IPv6 VIPs ({', '.join(ipv6)}); the group's instances are IPv4, so they are left out."
        )
    port = _health_check_port(svc, warnings)
    return _ServicePlan(name, instance_keys(svc), instance_vips(svc), spread, port, verbatim)


def _health_check_port(svc: Mapping[str, Any], warnings: list[str]) -> int | None:
    """healthCheckNodePort of an externalTrafficPolicy Local service: kube-proxy answers 200 there only on nodes
    with a local endpoint, so the VIP should live on such a node."""
    spec = objects.spec(svc)
    if spec.get("externalTrafficPolicy") != "Local":
        return None
    port = spec.get("healthCheckNodePort")
    if port is None:
        warnings.append(
            f"Service {namespaced_name(svc)} has externalTrafficPolicy Local but no healthCheckNodePort; "
            "its instances have no health check."
        )
        return None
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        raise KalabError(f"Service {namespaced_name(svc)} has healthCheckNodePort {port!r}, not a port number.")
    return port


def _health_script(plan: _ServicePlan) -> list[str]:
    url = f"http://127.0.0.1:{plan.health_port}/health"
    return [
        f"vrrp_script {plan.name} {{",
        # --fail: kube-proxy answers 503 on nodes without a local endpoint, and that must count as a failure.
        f'{INDENT}script "{CURL} --silent --fail --output /dev/null {url}"',
        f"{INDENT}interval {HEALTH_INTERVAL}",
        f"{INDENT}timeout {HEALTH_TIMEOUT}",
        f"{INDENT}rise {HEALTH_RISE}",
        f"{INDENT}fall {HEALTH_FALL}",
        "}",
    ]


def _instances(plan: _ServicePlan, ctx: _Context) -> list[list[str]]:
    """One vrrp_instance for the service, or one per VIP with spreadvips (each with its owner pod's lines)."""
    # Instances are named by the very keys the router IDs were assigned under, so every lookup succeeds.
    if not plan.spread:
        return [_instance(key, plan.vips, plan, [], ctx) for key in plan.keys]
    blocks = []
    for index, (key, vip) in enumerate(zip(plan.keys, plan.vips, strict=True)):
        owner = pod_name(ctx.pods[index % len(ctx.pods)]) if ctx.pods else None
        blocks.append(_instance(key, [vip], plan, _ownership(owner), ctx))
    return blocks


def _ownership(owner: str | None) -> list[str]:
    """keepalived's per-config-id lines: the owner pod (run with --config-id=<pod>) is MASTER, others BACKUP.

    With no pods yet there is no owner; the instance then runs with keepalived's defaults until pods exist.
    """
    if owner is None:
        return []
    return [
        f"@{owner} state MASTER",
        f"@^{owner} state BACKUP",
        f"@{owner} priority {MASTER_PRIORITY}",
        f"@^{owner} priority {BACKUP_PRIORITY}",
    ]


def _instance(key: str, vips: Sequence[str], plan: _ServicePlan, ownership: Sequence[str], ctx: _Context) -> list[str]:
    lines = [
        f"vrrp_instance {key} {{",
        f"{INDENT}interface {ctx.interface}",
        f"{INDENT}virtual_router_id {ctx.router_ids[key]}",
        f"{INDENT}virtual_ipaddress {{",
        *(f"{INDENT * 2}{vip}" for vip in vips),
        f"{INDENT}}}",
    ]
    if ctx.peers:
        lines += [f"{INDENT}unicast_peer {{", *(f"{INDENT * 2}{ip}" for ip in ctx.peers), f"{INDENT}}}"]
    if ctx.password is not None:
        lines += [
            f"{INDENT}authentication {{",
            f"{INDENT * 2}auth_type PASS",
            f"{INDENT * 2}auth_pass {ctx.password}",
            f"{INDENT}}}",
        ]
    if plan.health_port is not None:
        lines += [f"{INDENT}track_script {{", f"{INDENT * 2}{plan.name}", f"{INDENT}}}"]
    lines += [f"{INDENT}{line}" for line in ownership]
    # The service's own lines come last so that, where keepalived lets a later line win, they do.
    lines += [_keyword_line(k, v, 1) for k, v in sorted(plan.verbatim.items())]
    lines.append("}")
    return lines
