"""A container's environment and command line as Kubernetes builds them: `$(VAR)` expansion, fieldRef and
ConfigMap/Secret key references, and the words of `command` + `args` (a `bash -c` script only when it is one
simple command)."""

import base64
import re
import shlex
from collections.abc import Mapping
from typing import Any, Final

from kalab.lab.dataplane.sandbox import Sandbox
from kalab.lab.images.outcomes import ContainerConfigError, Lookup
from kalab.model import objects

BASE_PATH: Final = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

_SHELLS: Final = frozenset({"bash", "sh", "/bin/bash", "/bin/sh", "/usr/bin/bash", "/usr/bin/sh"})
# A `bash -c` script is run only when it is one simple command: no pipes, lists, redirections or substitutions.
_SHELL_SYNTAX: Final = re.compile(r"[;&|`<>(){}\n]|\$\(")
_BRACED_VAR: Final = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}")
_SHELL_VAR: Final = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)")
_K8S_VAR: Final = re.compile(r"\$\$|\$\(([-._a-zA-Z][-._a-zA-Z0-9]*)\)")
_FIELD_LABEL: Final = re.compile(r"^metadata\.(labels|annotations)\['([^']+)'\]$")


def expand_k8s(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' `$(VAR)` expansion in env values, command and args: defined names are replaced, `$$` is `$`,
    anything else stays as written."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env[name] if name in env else match.group(0)

    return _K8S_VAR.sub(replace, text)


def _field_ref(pod: Mapping[str, Any], sandbox: Sandbox | None, path: str) -> str:
    meta, spec, status = objects.meta(pod), objects.spec(pod), objects.status(pod)
    simple = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName") or "default",
        "status.hostIP": sandbox.ip if sandbox and sandbox.host_network else status.get("hostIP"),
        "status.podIP": sandbox.ip if sandbox else status.get("podIP"),
        "status.podIPs": sandbox.ip if sandbox else status.get("podIP"),
    }
    if path in simple:
        return str(simple[path] or "")
    if match := _FIELD_LABEL.match(path):
        return str((meta.get(match.group(1)) or {}).get(match.group(2)) or "")
    raise ContainerConfigError(f"unsupported fieldRef {path!r}")


def _key_ref(kind: str, namespace: str, ref: Mapping[str, Any], lookup: Lookup | None) -> str | None:
    name, key = str(ref.get("name") or ""), str(ref.get("key") or "")
    source = lookup(kind, namespace, name) if lookup else None
    what = "configmap" if kind == "ConfigMap" else "secret"
    if source is None:
        if ref.get("optional"):
            return None
        raise ContainerConfigError(f'{what} "{name}" not found')
    if kind == "ConfigMap":
        value = (source.get("data") or {}).get(key)
        found = None if value is None else str(value)
    else:
        raw = (source.get("data") or {}).get(key)
        found = None if raw is None else base64.b64decode(str(raw)).decode(errors="replace")
    if found is None and not ref.get("optional"):
        raise ContainerConfigError(f"couldn't find key {key} in {what} {namespace}/{name}")
    return found


def container_env(
    pod: Mapping[str, Any], container: Mapping[str, Any], sandbox: Sandbox | None, lookup: Lookup | None = None
) -> dict[str, str]:
    """The container's environment as the kubelet builds it: envFrom, then env (with `$(VAR)` and the downward API)."""
    namespace = objects.namespace_of(pod, "default")
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        prefix = str(source.get("prefix") or "")
        for kind, key in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
            if key not in source:
                continue
            ref = source[key] or {}
            found = lookup(kind, namespace, str(ref.get("name") or "")) if lookup else None
            if found is None:
                if ref.get("optional"):
                    continue
                raise ContainerConfigError(f'{kind.lower()} "{ref.get("name")}" not found')
            for name, value in (found.get("data") or {}).items():
                text = base64.b64decode(str(value)).decode(errors="replace") if kind == "Secret" else str(value)
                env[prefix + name] = text
    for item in container.get("env") or []:
        name = str(item.get("name") or "")
        if not name:
            continue
        source = item.get("valueFrom")
        if not source:
            env[name] = expand_k8s(str(item.get("value") or ""), env)
        elif "fieldRef" in source:
            env[name] = _field_ref(pod, sandbox, str((source["fieldRef"] or {}).get("fieldPath") or ""))
        elif "configMapKeyRef" in source or "secretKeyRef" in source:
            kind = "ConfigMap" if "configMapKeyRef" in source else "Secret"
            value = _key_ref(kind, namespace, source.get("configMapKeyRef") or source.get("secretKeyRef"), lookup)
            if value is not None:
                env[name] = value
        else:
            env[name] = ""  # resourceFieldRef: the lab sets no resource limits
    return env


def _shell_expand(word: str, env: Mapping[str, str]) -> str:
    return _SHELL_VAR.sub(lambda m: env.get(m.group(1) or m.group(2), ""), word)


def command_words(container: Mapping[str, Any], env: Mapping[str, str]) -> list[str]:
    """What the container execs: command + args after `$(VAR)` expansion; a `bash -c "exec prog …"` script becomes
    prog's own argv (with `${VAR}` expanded as the shell would). Raises ContainerConfigError for real shell code."""
    words = [expand_k8s(str(p), env) for p in [*(container.get("command") or []), *(container.get("args") or [])]]
    if len(words) >= 3 and words[0] in _SHELLS and words[1] == "-c":
        script = words[2]
        if _SHELL_SYNTAX.search(_BRACED_VAR.sub("", script.strip())):
            raise ContainerConfigError(
                "kalab lab runs `sh -c` scripts only when they are one command (`exec program args`), "
                f"not {' '.join(script.split())!r}"
            )
        try:
            parsed = shlex.split(script)
        except ValueError as err:
            raise ContainerConfigError(f"cannot parse the script {script!r}: {err}") from None
        if parsed[:1] == ["exec"]:
            parsed = parsed[1:]
        return [_shell_expand(word, env) for word in parsed]
    return words
