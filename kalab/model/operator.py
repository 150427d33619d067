"""Which Services a KeepalivedGroup serves, and how they become VRRP instances (FACTS.md §2).

Everything works on plain-dict Kubernetes objects (as the API returns them or as YAML loads them), so the
runbook, the lab's operator controller and the tests share one implementation.
"""

from __future__ import annotations

import functools
import ipaddress
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from kalab.model import objects
from kalab.model.errors import KalabError
from kalab.model.vrrp import timing_from_verbatim

GROUP_ANNOTATION = "keepalived-operator.redhat-cop.io/keepalivedgroup"
VERBATIM_ANNOTATION = "keepalived-operator.redhat-cop.io/verbatimconfig"
SPREADVIPS_ANNOTATION = "keepalived-operator.redhat-cop.io/spreadvips"
# The DaemonSet labels its pods with the group's name; that is how the operator finds its keepalived pods.
POD_GROUP_LABEL = "keepalivedGroup"


def _section(obj: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    section = obj.get(name)
    return section if isinstance(section, Mapping) else {}


def namespaced_name(obj: Mapping[str, Any]) -> str:
    """`<namespace>/<name>`; an object without a namespace is taken to live in `default`, as kubectl does."""
    meta = objects.meta(obj)
    return f"{meta.get('namespace') or 'default'}/{meta.get('name', '')}"


def _sort_key(obj: Mapping[str, Any]) -> tuple[str, str]:
    meta = objects.meta(obj)
    return (str(meta.get("namespace") or "default"), str(meta.get("name", "")))


def is_selected(group: Mapping[str, Any], svc: Mapping[str, Any]) -> bool:
    """The opt-in annotation names this group, and the Service is one that can carry VIPs at all."""
    if svc.get("kind", "Service") != "Service":
        return False
    if str(objects.annotations_of(svc).get(GROUP_ANNOTATION, "")).strip() != namespaced_name(group):
        return False
    spec = objects.spec(svc)
    return spec.get("type") == "LoadBalancer" or bool(spec.get("externalIPs"))


def selected_services(group: Mapping[str, Any], services: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The Services this group serves, sorted by namespace then name so the rendered config is stable."""
    picked = [dict(svc) for svc in services if is_selected(group, svc)]
    return sorted(picked, key=_sort_key)


def service_vips(svc: Mapping[str, Any]) -> list[str]:
    """Load-balancer ingress IPs merged with spec.externalIPs, first occurrence wins.

    OpenShift's auto-assign puts the same address in both places (the seed's `172.21.6.50,172.21.6.50`), so the
    merge must drop duplicates or keepalived would be told to add one address twice. Ingress entries that carry
    only a hostname have no address for keepalived and are skipped.
    """
    ingress = _section(objects.status(svc), "loadBalancer").get("ingress") or []
    candidates = [entry.get("ip") for entry in ingress if isinstance(entry, Mapping)]
    candidates += list(objects.spec(svc).get("externalIPs") or [])
    vips: list[str] = []
    for raw in candidates:
        if not raw:
            continue
        vip = str(raw).strip()
        if ip_version(vip) is None:
            raise KalabError(
                f"Service {namespaced_name(svc)} lists {vip!r} as an external or ingress IP, "
                "which is not an IP address; fix the Service."
            )
        if vip not in vips:
            vips.append(vip)
    return vips


@functools.lru_cache(maxsize=4096)
def ip_version(text: str) -> int | None:
    """4 or 6, or None when `text` is not an IP address. Cached: the operator reads every service's VIPs on each
    reconcile, and parsing them again each time was most of a reconcile's work with hundreds of services."""
    try:
        return ipaddress.ip_address(text).version
    except ValueError:
        return None


def spreads_vips(svc: Mapping[str, Any]) -> bool:
    return str(objects.annotations_of(svc).get(SPREADVIPS_ANNOTATION, "")).strip().lower() == "true"


def instance_vips(svc: Mapping[str, Any]) -> list[str]:
    """The VIPs the group's VRRP instances carry: the IPv4 ones.

    keepalived refuses to mix address families in one instance, and the group's peers and interfaceFromIP are
    IPv4, so IPv6 VIPs are left out (the renderer says so in its warnings).
    """
    return [vip for vip in service_vips(svc) if ip_version(vip) == 4]


@dataclass(frozen=True)
class CarriedService:
    """A service keepalived carries: its VIP and the KeepalivedGroup its annotation names."""

    vip: str
    group_namespace: str
    group: str


def carried_service(svc: Mapping[str, Any]) -> CarriedService:
    """The service's first VIP and its group, or one sentence saying what it still lacks."""
    vips, group = instance_vips(svc), str(objects.annotations_of(svc).get(GROUP_ANNOTATION, "")).strip()
    if not vips or not group:
        raise KalabError(
            f"Service {namespaced_name(svc)} has no EXTERNAL-IP carried by keepalived yet; patch the externalIP "
            "CIDRs and annotate it with a KeepalivedGroup first (notebooks 02 and 03)."
        )
    group_namespace, _, name = group.partition("/")
    return CarriedService(vips[0], group_namespace, name)


def vrrp_timing(svc: Mapping[str, Any], group: Mapping[str, Any]) -> tuple[float, int]:
    """(advert_int, VRRP version) of the service's instance: its verbatim lines over the group's verbatimConfig."""
    group_verbatim = _section(objects.spec(group), "verbatimConfig")
    return timing_from_verbatim(verbatim_config(svc), group_verbatim)


def instance_keys(svc: Mapping[str, Any]) -> list[str]:
    """The status.routerIDs keys (and vrrp_instance names) this Service produces.

    A Service without any VIP yet (a LoadBalancer still waiting for an address) produces none: keepalived flags
    an instance with an empty virtual_ipaddress block, and an ID held for it would be wasted until it gets one.
    """
    vips = instance_vips(svc)
    if not vips:
        return []
    name = namespaced_name(svc)
    if spreads_vips(svc):
        return [f"{name}/{vip}" for vip in vips]
    return [name]


def verbatim_config(svc: Mapping[str, Any]) -> dict[str, str]:
    """The Service's verbatim annotation: a JSON object of keepalived keyword → value for its vrrp_instance."""
    raw = objects.annotations_of(svc).get(VERBATIM_ANNOTATION)
    if raw is None or str(raw).strip() == "":
        return {}
    where = f"the {VERBATIM_ANNOTATION} annotation of Service {namespaced_name(svc)}"
    try:
        parsed = json.loads(str(raw))
    except json.JSONDecodeError as err:
        raise KalabError(
            f"{where} is not valid JSON ({err.msg} at character {err.pos}); "
            'write a JSON object such as {"advert_int": "2"}.'
        ) from None
    if not isinstance(parsed, dict):
        raise KalabError(f'{where} must be a JSON object such as {{"advert_int": "2"}}, not {type(parsed).__name__}.')
    return verbatim_lines(parsed, where)


def verbatim_lines(config: Mapping[str, Any], where: str) -> dict[str, str]:
    """Normalise a verbatim map to keyword → value strings; each pair must fit on one keepalived line.

    A value may be empty for bare keywords (`nopreempt`). Newlines or braces would let one entry open or close
    blocks behind the renderer's back, so they are refused rather than passed through.
    """
    lines: dict[str, str] = {}
    for key, value in config.items():
        keyword = str(key).strip()
        text = _scalar_text(value, f"{where} key {keyword!r}")
        if not keyword or any(c.isspace() or c in "{}" for c in keyword):
            raise KalabError(f"{where} has the key {keyword!r}; a key must be one keepalived keyword.")
        if any(c in "\r\n{}" for c in text):
            raise KalabError(f"{where} key {keyword!r} spans lines or braces; give one single-line value.")
        lines[keyword] = text
    return lines


def _scalar_text(value: Any, where: str) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        # YAML turns `true` into a bool; keepalived spells it in lower case.
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value).strip()
    raise KalabError(f"{where} holds a {type(value).__name__}; give a string or a number.")


def keepalived_pods(group: Mapping[str, Any], pods: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The group's DaemonSet pods (label `keepalivedGroup: <group>` in the group's namespace), sorted by name.

    The sort order decides spreadvips ownership, so every pod of the group must compute it the same way.
    """
    group_meta = objects.meta(group)
    namespace = group_meta.get("namespace") or "default"
    mine = []
    for pod in pods:
        meta = objects.meta(pod)
        labels = meta.get("labels")
        if not isinstance(labels, Mapping):
            labels = {}
        if pod.get("kind", "Pod") != "Pod" or (meta.get("namespace") or "default") != namespace:
            continue
        if labels.get(POD_GROUP_LABEL) == group_meta.get("name"):
            mine.append(dict(pod))
    return sorted(mine, key=lambda pod: str(objects.meta(pod).get("name", "")))


def pod_name(pod: Mapping[str, Any]) -> str:
    return str(objects.meta(pod).get("name", ""))


def pod_host_ip(pod: Mapping[str, Any]) -> str | None:
    host_ip = objects.status(pod).get("hostIP")
    return str(host_ip) if host_ip else None
