"""Kubernetes' own rules for the objects the lab stores, as k8s.io/kubernetes/pkg/apis/*/validation checks them.

Every write a client sends passes here after defaulting (the lab's own controllers are trusted, as typed Go code is
on a cluster, and checked by a test instead): object names (a DNS-1123 subdomain for most kinds, a DNS-1123 label for a
Namespace, a DNS-1035 label for a Service, a path segment for RBAC kinds), label keys and values, annotation keys and
their total size, and the fields the served kinds require (a Service's ports, a pod's containers and their images, a
workload's selector matching its template). The texts are apimachinery's (`util/validation`), since people search
for them. Types are not checked here: built-in bodies are type-checked when decoded (`decoding`), custom objects
against their schema (`schema_validation`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, Final

from kalab.lab.apiserver.errors import FieldError, field_invalid
from kalab.lab.apiserver.resources import ResourceType
from kalab.model import objects
from kalab.model.k8snames import CONFIG_KEY as _CONFIG_KEY
from kalab.model.k8snames import DNS1035_LABEL as _DNS1035_LABEL
from kalab.model.k8snames import DNS1123_LABEL as _DNS1123_LABEL
from kalab.model.k8snames import DNS1123_SUBDOMAIN as _DNS1123_SUBDOMAIN
from kalab.model.k8snames import LABEL_VALUE as _LABEL_VALUE
from kalab.model.k8snames import QUALIFIED_NAME as _QUALIFIED_NAME
from kalab.model.k8snames import config_key_re as _config_key_re
from kalab.model.k8snames import dns1035_re as _dns1035_re
from kalab.model.k8snames import label_re as _label_re
from kalab.model.k8snames import label_value_re as _label_value_re
from kalab.model.k8snames import qualified_re as _qualified_re
from kalab.model.k8snames import subdomain_re as _subdomain_re

Obj = dict[str, Any]
NameCheck = Callable[[str], list[str]]

_port_name_re = re.compile("^[-a-z0-9]+$")
TOTAL_ANNOTATION_SIZE: Final = 256 * 1024
CONFIG_SIZE: Final = 1024 * 1024
_RBAC: Final = "rbac.authorization.k8s.io"


def regex_error(message: str, pattern: str, *examples: str) -> str:
    """validation.RegexError: the message, examples and the regular expression (its double space included)."""
    if not examples:
        return f"{message} (regex used for validation is '{pattern}')"
    shown = "".join(("" if i == 0 else " or ") + f"'{e}', " for i, e in enumerate(examples))
    return f"{message} (e.g. {shown}regex used for validation is '{pattern}')"


def _max_len(length: int) -> str:
    return f"must be no more than {length} characters"


def dns1123_label(value: str) -> list[str]:
    errs = [_max_len(63)] if len(value) > 63 else []
    if not _label_re.match(value):
        if _subdomain_re.match(value):
            errs.append("must not contain dots")
        else:
            errs.append(
                regex_error(
                    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must "
                    "start and end with an alphanumeric character",
                    _DNS1123_LABEL,
                    "my-name",
                    "123-abc",
                )
            )
    return errs


def dns1123_subdomain(value: str) -> list[str]:
    errs = [_max_len(253)] if len(value) > 253 else []
    if not _subdomain_re.match(value):
        errs.append(
            regex_error(
                "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and "
                "must start and end with an alphanumeric character",
                _DNS1123_SUBDOMAIN,
                "example.com",
            )
        )
    return errs


def dns1035_label(value: str) -> list[str]:
    errs = [_max_len(63)] if len(value) > 63 else []
    if not _dns1035_re.match(value):
        errs.append(
            regex_error(
                "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
                "alphabetic character, and end with an alphanumeric character",
                _DNS1035_LABEL,
                "my-name",
                "abc-123",
            )
        )
    return errs


def path_segment(value: str) -> list[str]:
    """path.IsValidPathSegmentName: what RBAC names must be (they may hold ':' and capitals)."""
    if value in (".", ".."):
        return [f"may not be '{value}'"]
    return [f"may not contain '{c}'" for c in "/%" if c in value]


_QUALIFIED_MESSAGE: Final = (
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"
)


def qualified_name(value: str) -> list[str]:
    """IsQualifiedName: what label keys and annotation keys must be (`[prefix/]name`)."""
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
        errs: list[str] = []
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errs = ["prefix part must be non-empty"]
        else:
            errs = [f"prefix part {e}" for e in dns1123_subdomain(prefix)]
    else:
        return [
            "a qualified name "
            + regex_error(_QUALIFIED_MESSAGE, _QUALIFIED_NAME, "MyName", "my.name", "123-abc")
            + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ]
    if not name:
        errs.append("name part must be non-empty")
    elif len(name) > 63:
        errs.append("name part " + _max_len(63))
    if name and not _qualified_re.match(name):
        errs.append("name part " + regex_error(_QUALIFIED_MESSAGE, _QUALIFIED_NAME, "MyName", "my.name", "123-abc"))
    return errs


def label_value(value: str) -> list[str]:
    errs = [_max_len(63)] if len(value) > 63 else []
    if not _label_value_re.match(value):
        errs.append(
            regex_error(
                "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and "
                "must start and end with an alphanumeric character",
                _LABEL_VALUE,
                "MyValue",
                "my_value",
                "12345",
            )
        )
    return errs


# -- object metadata ------------------------------------------------------------------------------------------------

# The name rule of each kind (ValidateObjectMeta's nameFn); the others' names are DNS-1123 subdomains.
_NAME_RULES: Final[dict[str, NameCheck]] = {
    "/namespaces": dns1123_label,
    "/services": dns1035_label,
    f"{_RBAC}/roles": path_segment,
    f"{_RBAC}/rolebindings": path_segment,
    f"{_RBAC}/clusterroles": path_segment,
    f"{_RBAC}/clusterrolebindings": path_segment,
}


def name_rule(rt: ResourceType) -> NameCheck:
    return _NAME_RULES.get(rt.key, dns1123_subdomain)


def _strings(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def object_meta(rt: ResourceType, meta: Mapping[str, Any]) -> list[FieldError]:
    """ValidateObjectMeta: name (or generateName), namespace, labels, annotations."""
    errors: list[FieldError] = []
    check = name_rule(rt)
    name, prefix = meta.get("name"), meta.get("generateName")
    if isinstance(prefix, str) and prefix:
        # A prefix may end in '-' (the random suffix follows), so it is checked as if it did not.
        masked = prefix[:-1] + "a" if prefix.endswith("-") else prefix
        errors += [FieldError("FieldValueInvalid", "metadata.generateName", prefix, e) for e in check(masked)]
    if isinstance(name, str) and name:
        errors += [FieldError("FieldValueInvalid", "metadata.name", name, e) for e in check(name)]
    elif not prefix:
        errors.append(FieldError("FieldValueRequired", "metadata.name", detail="name or generateName is required"))
    namespace = meta.get("namespace")
    if rt.namespaced and isinstance(namespace, str) and namespace:
        errors += [
            FieldError("FieldValueInvalid", "metadata.namespace", namespace, e) for e in dns1123_label(namespace)
        ]
    for key, value in _strings(meta.get("labels")).items():
        errors += [FieldError("FieldValueInvalid", "metadata.labels", key, e) for e in qualified_name(key)]
        if isinstance(value, str):
            errors += [FieldError("FieldValueInvalid", "metadata.labels", value, e) for e in label_value(value)]
    annotations = _strings(meta.get("annotations"))
    size = 0
    for key, value in annotations.items():
        errors += [FieldError("FieldValueInvalid", "metadata.annotations", key, e) for e in qualified_name(key.lower())]
        size += len(key) + (len(value) if isinstance(value, str) else 0)
    if size > TOTAL_ANNOTATION_SIZE:
        errors.append(
            FieldError(
                "FieldValueTooLong",
                "metadata.annotations",
                detail=f"may not be more than {TOTAL_ANNOTATION_SIZE} bytes",
            )
        )
    return errors


# -- kinds ----------------------------------------------------------------------------------------------------------


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _supported(path: str, value: Any, allowed: tuple[str, ...]) -> list[FieldError]:
    if value in allowed:
        return []
    listed = ", ".join(f'"{a}"' for a in sorted(allowed))
    return [FieldError("FieldValueNotSupported", path, value, f"supported values: {listed}")]


def _port_number(path: str, value: Any) -> list[FieldError]:
    if isinstance(value, int) and not isinstance(value, bool) and not 1 <= value <= 65535:
        return [FieldError("FieldValueInvalid", path, value, "must be between 1 and 65535, inclusive")]
    return []


def port_name(value: str) -> list[str]:
    """IsValidPortName: an IANA service name (a container port's or a target port's name)."""
    errs = [_max_len(15)] if len(value) > 15 else []
    if not _port_name_re.match(value):
        errs.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if not re.search("[a-z]", value):
        errs.append("must contain at least one letter (a-z)")
    if "--" in value:
        errs.append("must not contain consecutive hyphens")
    if value[:1] == "-" or value[-1:] == "-":
        errs.append("must not begin or end with a hyphen")
    return errs


def _service(obj: Obj) -> list[FieldError]:
    spec = objects.spec(obj)
    kind = spec.get("type", "ClusterIP")
    errors = _supported("spec.type", kind, ("ClusterIP", "ExternalName", "LoadBalancer", "NodePort"))
    errors += _supported("spec.sessionAffinity", spec.get("sessionAffinity", "None"), ("ClientIP", "None"))
    ports = _list(spec.get("ports"))
    headless = spec.get("clusterIP") == "None"
    if not ports and kind != "ExternalName" and not headless:
        errors.append(FieldError("FieldValueRequired", "spec.ports"))
    seen: set[Any] = set()
    for index, port in enumerate(ports):
        if not isinstance(port, dict):
            continue
        path = f"spec.ports[{index}]"
        name = port.get("name")
        if len(ports) > 1 and not name:
            errors.append(FieldError("FieldValueRequired", f"{path}.name"))
        elif isinstance(name, str) and name:
            errors += [FieldError("FieldValueInvalid", f"{path}.name", name, e) for e in dns1123_label(name)]
            if name in seen:
                errors.append(FieldError("FieldValueDuplicate", f"{path}.name", name))
            seen.add(name)
        if "port" not in port:
            errors.append(FieldError("FieldValueRequired", f"{path}.port"))
        errors += _port_number(f"{path}.port", port.get("port"))
        errors += _supported(f"{path}.protocol", port.get("protocol", "TCP"), ("SCTP", "TCP", "UDP"))
        target = port.get("targetPort")
        if isinstance(target, str):
            errors += [FieldError("FieldValueInvalid", f"{path}.targetPort", target, e) for e in port_name(target)]
        else:
            errors += _port_number(f"{path}.targetPort", target)
        node_port = port.get("nodePort")
        if node_port and kind == "ClusterIP":
            errors.append(
                FieldError(
                    "FieldValueForbidden", f"{path}.nodePort", detail="may not be used when `type` is 'ClusterIP'"
                )
            )
    if kind == "ExternalName" and not spec.get("externalName"):
        errors.append(FieldError("FieldValueRequired", "spec.externalName"))
    return errors


def _containers(spec: Mapping[str, Any], path: str) -> list[FieldError]:
    containers = _list(spec.get("containers"))
    errors: list[FieldError] = []
    if not containers:
        errors.append(FieldError("FieldValueRequired", f"{path}.containers"))
    names: set[str] = set()
    for field in ("initContainers", "containers"):
        for index, container in enumerate(_list(spec.get(field))):
            if not isinstance(container, dict):
                continue
            here = f"{path}.{field}[{index}]"
            name = container.get("name")
            if not name:
                errors.append(FieldError("FieldValueRequired", f"{here}.name"))
            elif isinstance(name, str):
                errors += [FieldError("FieldValueInvalid", f"{here}.name", name, e) for e in dns1123_label(name)]
                if name in names:
                    errors.append(FieldError("FieldValueDuplicate", f"{here}.name", name))
                names.add(name)
            if not container.get("image"):
                errors.append(FieldError("FieldValueRequired", f"{here}.image"))
            for number, port in enumerate(_list(container.get("ports"))):
                if isinstance(port, dict):
                    errors += _port_number(f"{here}.ports[{number}].containerPort", port.get("containerPort"))
    restart = spec.get("restartPolicy")
    if restart is not None:
        errors += _supported(f"{path}.restartPolicy", restart, ("Always", "Never", "OnFailure"))
    return errors


def _pod(obj: Obj) -> list[FieldError]:
    return _containers(objects.spec(obj), "spec")


def _workload(obj: Obj) -> list[FieldError]:
    """Deployments, DaemonSets, ReplicaSets: a selector, and a template whose labels it selects."""
    spec = objects.spec(obj)
    errors: list[FieldError] = []
    selector = spec.get("selector")
    template = _strings(spec.get("template"))
    labels = objects.labels_of(template)
    if not isinstance(selector, dict) or not (selector.get("matchLabels") or selector.get("matchExpressions")):
        errors.append(FieldError("FieldValueRequired", "spec.selector"))
    else:
        wanted = _strings(selector.get("matchLabels"))
        if any(labels.get(k) != v for k, v in wanted.items()):
            errors.append(
                FieldError(
                    "FieldValueInvalid",
                    "spec.template.metadata.labels",
                    labels,
                    "`selector` does not match template `labels`",
                )
            )
    replicas = spec.get("replicas")
    if isinstance(replicas, int) and replicas < 0:
        errors.append(FieldError("FieldValueInvalid", "spec.replicas", replicas, "must be greater than or equal to 0"))
    errors += _containers(objects.spec(template), "spec.template.spec")
    return errors


def _config_data(obj: Obj) -> list[FieldError]:
    """ConfigMaps and Secrets: keys a file could be named, 1 MiB in all."""
    errors: list[FieldError] = []
    size = 0
    for field in ("data", "binaryData", "stringData"):
        for key, value in _strings(obj.get(field)).items():
            if len(key) > 253 or not _config_key_re.match(key) or key in (".", "..") or key.startswith(".."):
                detail = regex_error(
                    "a valid config key must consist of alphanumeric characters, '-', '_' or '.'",
                    _CONFIG_KEY,
                    "key.name",
                    "KEY_NAME",
                    "key-name",
                )
                errors.append(FieldError("FieldValueInvalid", f"{field}[{key}]", key, detail))
            size += len(value) if isinstance(value, str) else 0
    if size > CONFIG_SIZE:
        errors.append(FieldError("FieldValueTooLong", "data", detail=f"may not be more than {CONFIG_SIZE} bytes"))
    return errors


_KIND_RULES: Final[dict[str, Callable[[Obj], list[FieldError]]]] = {
    "/services": _service,
    "/pods": _pod,
    "/configmaps": _config_data,
    "/secrets": _config_data,
    "apps/deployments": _workload,
    "apps/daemonsets": _workload,
    "apps/replicasets": _workload,
}


def errors_of(rt: ResourceType, obj: Obj) -> list[FieldError]:
    """Every rule `obj` breaks, metadata first."""
    errors = object_meta(rt, objects.meta(obj))
    rule = _KIND_RULES.get(rt.key)
    if rule is not None:
        errors += rule(obj)
    return errors


def validate(rt: ResourceType, obj: Obj) -> None:
    """422 Invalid naming every rule `obj` breaks; nothing when it keeps them all."""
    errors = errors_of(rt, obj)
    if errors:
        raise field_invalid(rt.kind, objects.name_of(obj), errors, rt.group)
