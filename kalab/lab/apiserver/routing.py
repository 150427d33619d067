"""Routing: the paths the API server serves, parsed into the request a verb handler works from.

As kube-apiserver's request info resolver does: `/api/{version}` and `/apis/{group}/{version}`, an optional
`watch/` prefix, `namespaces/{ns}/` for namespaced kinds, then resource, name and subresource (pods' `proxy` keeps
the rest of the path). Discovery documents (`/version`, `/api`, `/apis`, a group, a group version) are found here
too, and the errors a path that names nothing gets.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, unquote

from kalab.lab.apiserver import discovery
from kalab.lab.apiserver.errors import ApiError, bad_request
from kalab.lab.apiserver.resources import Registry, ResourceType
from kalab.lab.apiserver.store import Obj
from kalab.model import objects

HEALTH = frozenset({"healthz", "readyz", "livez"})
# The methods a verb can be routed from; any other is refused with 405 before its body is read.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
ROOT_PATHS = ["/api", "/api/v1", "/apis", "/healthz", "/livez", "/readyz", "/version"]


def method_not_allowed() -> ApiError:
    return ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")


def no_such_path() -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource")


def unavailable(message: str) -> ApiError:
    return ApiError(503, "ServiceUnavailable", message)


@dataclass
class ApiRequest:
    """A request for a resource, parsed from its path and query: what every verb handler works from."""

    method: str
    rt: ResourceType
    namespace: str | None
    name: str | None
    sub: str | None
    watch: bool
    query: dict[str, list[str]]
    body: bytes
    content_type: str
    proxy_target: str = ""  # pods/{name}[:port]/proxy: the name segment as written
    proxy_path: str = "/"
    user_agent: str = ""  # names the field manager of a write that gives no ?fieldManager=

    def q(self, key: str, default: str | None = None) -> str | None:
        values = self.query.get(key)
        return values[-1] if values else default

    def flag(self, key: str) -> bool:
        return (self.q(key) or "").lower() in ("true", "1")

    def integer(self, key: str) -> int | None:
        value = self.q(key)
        if value in (None, ""):
            return None
        try:
            return int(value)
        except ValueError as err:
            raise bad_request(f"invalid value for {key}: {value!r}") from err

    @property
    def dry_run(self) -> bool:
        return "All" in self.query.get("dryRun", [])


def discovery_document(registry: Registry, address: str, segments: list[str]) -> Obj | None:
    """The discovery document at `segments`, or None when the path is not a discovery path."""
    if segments == ["version"]:
        return discovery.version_info()
    if segments == ["api"]:
        return discovery.api_versions(address)
    if segments == ["apis"]:
        return discovery.api_group_list(registry)
    if len(segments) == 2 and segments[0] == "api":
        found = discovery.resource_list(registry, "", segments[1])
    elif len(segments) == 2 and segments[0] == "apis":
        found = discovery.api_group(registry, segments[1])
    elif len(segments) == 3 and segments[0] == "apis":
        found = discovery.resource_list(registry, segments[1], segments[2])
    else:
        return None
    if found is None:
        raise no_such_path()
    return found


def parse(registry: Registry, method: str, raw_path: str, query: str, body: bytes, content_type: str) -> ApiRequest:
    """The resource request a path names (group, version, namespace, resource, name, subresource); 404 otherwise."""
    raw = [s for s in raw_path.split("/") if s != ""]
    segments = [unquote(s) for s in raw]
    if segments[:1] == ["api"] and len(segments) >= 3:
        group, version, rest, offset = "", segments[1], segments[2:], 2
    elif segments[:1] == ["apis"] and len(segments) >= 4:
        group, version, rest, offset = segments[1], segments[2], segments[3:], 3
    else:
        raise no_such_path()
    watch = rest[:1] == ["watch"]
    if watch:
        rest, offset = rest[1:], offset + 1
    namespace: str | None = None
    if rest[:1] == ["namespaces"] and len(rest) >= 3:
        inner = registry.get(group, version, rest[2])
        if inner is not None and inner.namespaced:
            namespace, rest, offset = rest[1], rest[2:], offset + 2
        elif not (group == "" and len(rest) == 3):  # /api/v1/namespaces/{name}/status is the namespace's own
            raise no_such_path()
    if not rest:
        raise no_such_path()
    rt = registry.get(group, version, rest[0])
    if rt is None:
        raise no_such_path()
    if namespace is not None and not rt.namespaced:
        raise no_such_path()
    request = ApiRequest(
        method=method,
        rt=rt,
        namespace=namespace,
        name=rest[1] if len(rest) > 1 else None,
        sub=rest[2] if len(rest) > 2 else None,
        watch=watch,
        query=parse_qs(query, keep_blank_values=True),
        body=body,
        content_type=content_type,
    )
    if request.sub == "proxy":
        request.proxy_target = rest[1]
        tail = raw[offset + 3 :]
        path = "/" + "/".join(tail)
        if tail and raw_path.endswith("/"):
            path += "/"
        request.proxy_path = path + (f"?{query}" if query else "")
    elif len(rest) > 3:
        raise no_such_path()
    if request.sub is not None and request.sub not in rt.subresources:
        raise no_such_path()
    if request.name is not None and rt.namespaced and namespace is None:
        raise no_such_path()  # a namespaced object is only addressed inside its namespace
    if request.flag("watch"):
        request.watch = True
    return request


def proxy_target(target: str) -> tuple[str, int]:
    """`[scheme:]name[:port]` → (name, port or 0 when it must come from the pod)."""
    parts = target.split(":")
    if len(parts) == 3 or (len(parts) == 2 and parts[0] in ("http", "https")):
        parts = parts[1:]
    name = parts[0]
    port_text = parts[1] if len(parts) > 1 else ""
    return name, int(port_text) if port_text.isdigit() else 0


def default_port(pod: Obj, target: str) -> int:
    """A named port (`test-0:metrics`) from the pod's containers, else its first declared port, else 80."""
    wanted = target.split(":")[-1] if ":" in target else ""
    ports = [p for c in objects.spec(pod).get("containers") or [] for p in c.get("ports") or []]
    for port in ports:
        if wanted and port.get("name") == wanted:
            return int(port["containerPort"])
    if wanted:
        raise bad_request(f'pod "{objects.name_of(pod)}" has no port named "{wanted}"')
    return int(ports[0]["containerPort"]) if ports else 80
