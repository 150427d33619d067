"""The Kubernetes objects each runbook step applies, as plain dicts (the same for the runbook, the CLI and the lab).

Every builder checks its arguments and raises KalabError with one sentence, so a typo is reported before
anything reaches a cluster.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from kalab.model import k8snames
from kalab.model.cidr import ipv4_network
from kalab.model.errors import KalabError

KEEPALIVED_API = "redhatcop.redhat.io/v1alpha1"
GROUP_ANNOTATION = "keepalived-operator.redhat-cop.io/keepalivedgroup"
DEFAULT_IMAGE = "registry.redhat.io/openshift4/ose-keepalived-ipfailover"
DEFAULT_NODE_SELECTOR: dict[str, str] = {"node-role.kubernetes.io/loadbalancer": ""}
DEMO_IMAGE = "quay.io/wangzheng422/php:demo.02"

Manifest = dict[str, Any]

_LABEL = k8snames.label_re
_LABEL_1035 = k8snames.dns1035_re
_SUBDOMAIN = k8snames.subdomain_re
_QUALIFIED_NAME = k8snames.qualified_re
_LABEL_VALUE = k8snames.label_value_re
_SECRET_KEY = k8snames.config_key_re


# --- name checks: Kubernetes' own rules, so the API server will not reject what we render -------------------


def dns1123_label(value: str, what: str) -> str:
    """`value` when it is a valid namespace-style name (lower case, digits, '-', at most 63 characters)."""
    if len(value) > 63 or not _LABEL.match(value):
        raise KalabError(
            f'{what} "{value}" is not a valid name; use at most 63 lower-case letters, digits and "-", '
            "starting and ending with a letter or digit."
        )
    return value


def dns1123_subdomain(value: str, what: str, max_len: int = 253) -> str:
    """`value` when it is a valid object name (dot-separated DNS labels, at most `max_len` characters)."""
    if len(value) > max_len or not _SUBDOMAIN.match(value):
        raise KalabError(
            f'{what} "{value}" is not a valid name; use at most {max_len} lower-case letters, digits, "-" and ".", '
            "starting and ending with a letter or digit."
        )
    return value


def _label_key(key: str, what: str) -> str:
    prefix, _, name = key.rpartition("/")
    prefix_ok = not prefix or (len(prefix) <= 253 and bool(_SUBDOMAIN.match(prefix)))
    if not (prefix_ok and len(name) <= 63 and _QUALIFIED_NAME.match(name)):
        raise KalabError(
            f'{what} key "{key}" is not a valid key; write an optional DNS prefix and "/" then a name of letters, '
            "digits, '-', '_' or '.', e.g. node-role.kubernetes.io/loadbalancer."
        )
    return key


def _labels(labels: Mapping[str, str], what: str) -> dict[str, str]:
    for key, value in labels.items():
        _label_key(key, what)
        if len(value) > 63 or not _LABEL_VALUE.match(value):
            raise KalabError(
                f'{what} value "{value}" for {key} is not a valid label value; use at most 63 letters, digits, '
                "'-', '_' or '.', starting and ending with a letter or digit, or leave it empty."
            )
    return dict(labels)


def _annotations(annotations: Mapping[str, str], what: str) -> dict[str, str]:
    for key in annotations:
        _label_key(key, what)
    return dict(annotations)


def _image(image: str, what: str = "The image") -> str:
    if not image or any(c.isspace() for c in image):
        raise KalabError(f'{what} "{image}" is not an image reference; give one like {DEFAULT_IMAGE}.')
    return image


# --- OLM -------------------------------------------------------------------------------------------------------


def olm_install(
    namespace: str = "keepalived-operator",
    channel: str = "alpha",
    source: str = "community-operators",
    source_namespace: str = "openshift-marketplace",
    package: str = "keepalived-operator",
) -> list[Manifest]:
    """Namespace, OperatorGroup and Subscription that make OLM install the operator for all namespaces."""
    dns1123_label(namespace, "The namespace")
    dns1123_label(source_namespace, "The catalog source namespace")
    dns1123_subdomain(source, "The catalog source")
    dns1123_subdomain(package, "The package")
    if not channel or any(c.isspace() for c in channel):
        raise KalabError(f'The channel "{channel}" is not a channel name; give one like alpha.')
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        {
            # No targetNamespaces: the operator watches every namespace, as services needing VIPs live anywhere.
            "apiVersion": "operators.coreos.com/v1",
            "kind": "OperatorGroup",
            "metadata": {"name": namespace, "namespace": namespace},
            "spec": {},
        },
        {
            "apiVersion": "operators.coreos.com/v1alpha1",
            "kind": "Subscription",
            "metadata": {"name": package, "namespace": namespace},
            "spec": {
                "channel": channel,
                "installPlanApproval": "Automatic",
                "name": package,
                "source": source,
                "sourceNamespace": source_namespace,
            },
        },
    ]


# --- KeepalivedGroup -------------------------------------------------------------------------------------------


def keepalived_group(
    name: str = "keepalivedgroup-workers",
    namespace: str = "keepalived-operator",
    *,
    interface: str | None = None,
    interface_from_ip: str | None = None,
    node_selector: Mapping[str, str] | None = None,
    image: str = DEFAULT_IMAGE,
    blacklist_router_ids: Sequence[int] = (),
    unicast: bool = False,
    password_secret: str | None = None,
    password_key: str = "password",
    verbatim: Mapping[str, str] | None = None,
    priority_class: str | None = None,
    pod_annotations: Mapping[str, str] | None = None,
) -> Manifest:
    """A KeepalivedGroup; optional fields appear only when set.

    The CRD marks `interface` required, so with only `interface_from_ip` it is rendered empty: the operator
    ignores it then and each node uses the interface that routes to `interface_from_ip`.
    """
    # The name also becomes the pods' `keepalivedGroup` label value, hence the 63-character limit.
    dns1123_subdomain(name, "The KeepalivedGroup name", max_len=63)
    dns1123_label(namespace, "The namespace")
    spec: dict[str, Any] = {
        "image": _image(image),
        "interface": _interface(interface, interface_from_ip),
    }
    if interface_from_ip is not None:
        spec["interfaceFromIP"] = _ipv4_address(interface_from_ip)
    spec["nodeSelector"] = _labels(
        DEFAULT_NODE_SELECTOR if node_selector is None else node_selector, "The node selector"
    )
    if blacklist_router_ids:
        spec["blacklistRouterIDs"] = _router_ids(blacklist_router_ids)
    if unicast:
        spec["unicastEnabled"] = True
    if password_secret is not None:
        spec["passwordAuth"] = _password_auth(password_secret, password_key)
    if verbatim:
        spec["verbatimConfig"] = _verbatim(verbatim)
    if priority_class is not None:
        spec["daemonsetPodPriorityClassName"] = dns1123_subdomain(priority_class, "The priority class")
    if pod_annotations:
        spec["daemonsetPodAnnotations"] = _annotations(pod_annotations, "The pod annotation")
    return {
        "apiVersion": KEEPALIVED_API,
        "kind": "KeepalivedGroup",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def _interface(interface: str | None, interface_from_ip: str | None) -> str:
    if interface is None:
        if interface_from_ip is None:
            raise KalabError(
                "A KeepalivedGroup needs an interface (e.g. ens3) or an IPv4 address to find it by "
                "(interfaceFromIP, e.g. 192.168.7.1); give one of them."
            )
        return ""
    # Linux interface names: 1–15 bytes, no "/" and no whitespace (IFNAMSIZ and dev_valid_name()).
    if (
        not 0 < len(interface.encode()) <= 15
        or interface in {".", ".."}
        or any(c == "/" or c.isspace() for c in interface)
    ):
        raise KalabError(
            f'The interface "{interface}" is not a valid Linux interface name; use up to 15 characters without '
            '"/" or spaces, e.g. ens3.'
        )
    return interface


def _ipv4_address(text: str) -> str:
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        raise KalabError(
            f'interfaceFromIP "{text}" is not an IPv4 address; give one address (no prefix length) that the '
            "keepalived nodes route to, e.g. 192.168.7.1."
        ) from None
    return text


def _router_ids(ids: Sequence[int]) -> list[int]:
    for rid in ids:
        if isinstance(rid, bool) or not isinstance(rid, int) or not 1 <= rid <= 255:
            raise KalabError(f"Router ID {rid!r} is out of range; VRRP router IDs are whole numbers from 1 to 255.")
    return list(ids)


def _password_auth(secret: str, key: str) -> dict[str, Any]:
    dns1123_subdomain(secret, "The password secret")
    if len(key) > 253 or not _SECRET_KEY.match(key):
        raise KalabError(
            f'The secret key "{key}" is not a valid Secret key; use letters, digits, "-", "_" or ".", e.g. password.'
        )
    return {"secretRef": {"name": secret}, "secretKey": key}


def _verbatim(verbatim: Mapping[str, str]) -> dict[str, str]:
    # Each pair becomes one "key value" line in global_defs, so neither part may break the line.
    for key, value in verbatim.items():
        if not key or any(c.isspace() for c in key) or "\n" in value or "\r" in value:
            raise KalabError(
                f'The verbatim config entry "{key}" cannot become one keepalived line; use a keyword without '
                "spaces and a value without line breaks, e.g. vrrp_garp_master_delay=1."
            )
    return dict(verbatim)


# --- privileged SCC for the keepalived pods --------------------------------------------------------------------


def scc_user(namespace: str, service_account: str = "default") -> str:
    """The user name OpenShift gives a service account, as it appears in an SCC's `users` list."""
    return f"system:serviceaccount:{namespace}:{service_account}"


def scc_grant(
    namespace: str = "keepalived-operator",
    service_account: str = "default",
    scc: str = "privileged",
    form: Literal["users", "rbac"] = "users",
) -> list[Manifest] | Manifest:
    """What `oc adm policy add-scc-to-user <scc> -z <sa> -n <ns>` does, in either form.

    form "users" (older 4.x): a JSON patch (RFC 6902) for the SCC object `securitycontextconstraints/<scc>` that
    appends the service account's user name to its `users` list; apply it with
    `oc patch scc <scc> --type=json -p "$(kalab render scc-grant --form users --json)"`. Applying it twice adds the
    name twice, which is harmless but untidy.

    form "rbac" (newer 4.x): a RoleBinding in the namespace, named like the ClusterRole
    `system:openshift:scc:<scc>` that it binds to the service account; apply it with `oc apply -f`.
    """
    dns1123_label(namespace, "The namespace")
    dns1123_subdomain(service_account, "The service account")
    dns1123_subdomain(scc, "The SCC")
    if form == "users":
        return [{"op": "add", "path": "/users/-", "value": scc_user(namespace, service_account)}]
    if form == "rbac":
        role = f"system:openshift:scc:{scc}"
        return {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": role, "namespace": namespace},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [{"kind": "ServiceAccount", "name": service_account, "namespace": namespace}],
        }
    raise KalabError(f'The SCC grant form "{form}" is unknown; use "users" (older 4.x) or "rbac" (newer 4.x).')


# --- externalIP network patch ----------------------------------------------------------------------------------


def network_patch(allowed: str, auto_assign: str) -> Manifest:
    """The JSON merge patch for `network.config.openshift.io/cluster` that the seed applies.

    Values are kept verbatim (not normalised), as the seed's envsubst template does: 172.21.6.33/27 stays.
    """
    ipv4_network(allowed, "the allowed range")
    ipv4_network(auto_assign, "the auto-assign range")
    return {"spec": {"externalIP": {"policy": {"allowedCIDRs": [allowed]}, "autoAssignCIDRs": [auto_assign]}}}


def network_patch_json(allowed: str, auto_assign: str) -> str:
    """The patch as the seed's `envsubst < network-patch.yaml | yq eval -j -` prints it, byte for byte.

    yq keeps the template's key order and pretty-prints with two-space indentation and a final newline; the
    values are validated CIDRs, so no character needs escaping differently from yq.
    """
    return json.dumps(network_patch(allowed, auto_assign), indent=2) + "\n"


# --- the seed's demo application -------------------------------------------------------------------------------


def demo(
    namespace: str = "demo",
    nodes: Sequence[str] = ("master-0", "master-2"),
    image: str = DEMO_IMAGE,
    group: str = "keepalived-operator/keepalivedgroup-workers",
    service: str = "demo",
) -> list[Manifest]:
    """One pod per node (test-0, test-1, …) labelled env=test, and the LoadBalancer service the group serves."""
    dns1123_label(namespace, "The namespace")
    _image(image)
    # Service names are stricter than other names: they must start with a letter (DNS-1035).
    if len(service) > 63 or not _LABEL_1035.match(service):
        raise KalabError(
            f'The service name "{service}" is not valid; use at most 63 lower-case letters, digits and "-", '
            "starting with a letter."
        )
    if not nodes:
        raise KalabError("The demo needs at least one node to pin a pod to; give node names such as master-0.")
    for node in nodes:
        dns1123_subdomain(node, "The node name")
    _group_ref(group)
    pods = [_demo_pod(f"test-{i}", namespace, node, image) for i, node in enumerate(nodes)]
    return [*pods, _demo_service(service, namespace, group)]


def _group_ref(group: str) -> None:
    ns, sep, name = group.partition("/")
    if not sep or len(ns) > 63 or not _LABEL.match(ns) or len(name) > 63 or not _SUBDOMAIN.match(name):
        raise KalabError(
            f'The KeepalivedGroup reference "{group}" is not <namespace>/<name>; '
            "write it like keepalived-operator/keepalivedgroup-workers."
        )


def _demo_pod(name: str, namespace: str, node: str, image: str) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {"env": "test"}},
        "spec": {
            "restartPolicy": "OnFailure",
            "nodeSelector": {"kubernetes.io/hostname": node},
            "containers": [{"name": "php", "image": image}],
        },
    }


def _demo_service(name: str, namespace: str, group: str) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace, "annotations": {GROUP_ANNOTATION: group}},
        "spec": {
            "type": "LoadBalancer",
            "ports": [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 80}],
            "selector": {"env": "test"},
        },
    }
