"""The lab's HTTPS API server: kube-apiserver's REST surface over the Store, for kubectl and the `kubernetes` client.

`serve()` writes fresh TLS material, a bearer token and a kubeconfig (all 0600) under the state directory, listens
on loopback only and answers in a thread per connection (the TLS handshake happens in that thread, so a slow client
never holds up the accept loop). Everything but the health endpoints needs the bearer token.

Routing covers the core group (`/api/v1`) and named groups (`/apis/{group}/{version}`), namespaced and
cluster-scoped resources, collections, objects and subresources (status, scale, and pods' log/exec/proxy, which
`kalab.lab.apiserver.streams` speaks), plus `/watch/` paths. Verbs: get, list (selectors, limit/continue), watch
(chunked JSON lines, resumable from a resourceVersion, bookmarks), create, update, patch (JSON, merge, strategic,
server-side apply), delete and deletecollection, each with dryRun=All (admitted like the real write, stored
nowhere). Every write records its field manager in managedFields (`fieldmanager`); deletes honour finalizers and
propagation policies, and a deleted namespace terminates through its finalizer (`namespaces`). GET answers JSON,
a Table or PartialObjectMetadata, as the Accept header asks.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hmac
import ipaddress
import json
import logging
import re
import select
import socket
import ssl
import string
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, cast
from urllib.parse import parse_qs, unquote, urlsplit

import h11

from kalab.lab.apiserver import (
    access,
    discovery,
    fieldmanager,
    openapi,
    portforward,
    protobuf,
    streams,
    tables,
    transport,
)
from kalab.lab.apiserver.attach import attach_hooks
from kalab.lab.apiserver.crds import CrdController, read_defaults, start_crd_controller
from kalab.lab.apiserver.errors import ApiError, bad_request, conflict, forbidden_on, invalid, not_found
from kalab.lab.apiserver.hooks import ExecRequest, LogRequest, PodHooks
from kalab.lab.apiserver.kubeconfig import write_kubeconfig
from kalab.lab.apiserver.namespaces import NamespaceTerminator
from kalab.lab.apiserver.patch import APPLY_PATCH, PATCH_TYPES, STRATEGIC_PATCH, apply_patch, parse_body
from kalab.lab.apiserver.resources import Registry, ResourceType
from kalab.lab.apiserver.store import Obj, Propagation, Store, initial_status
from kalab.lab.apiserver.tls import make_tls, new_token
from kalab.lab.context import LabContext

_log = logging.getLogger(__name__)

MAX_BODY = 16 * 1024 * 1024
IDLE_TIMEOUT = 120.0  # an idle keep-alive connection is closed after this long
HANDSHAKE_TIMEOUT = 10.0
WATCH_TIMEOUT = 1800.0  # kube-apiserver's --min-request-timeout
WATCH_TICK = 1.0  # how often an idle watch checks whether its client went away
PATCH_RETRIES = 5
HEALTH = frozenset({"healthz", "readyz", "livez"})
_NAME_CHARS = string.ascii_lowercase + string.digits
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")

# Groups kube-apiserver (or OpenShift's own API servers) serve from compiled types, which is what strategic merge
# patch needs; everything else is a CRD on a real cluster (config.openshift.io, OLM, monitoring, SCC in 4.x) and
# refuses it with 415, so a runbook that works here works there.
_STRATEGIC_GROUPS = frozenset(
    {
        "",
        "apps",
        "batch",
        "autoscaling",
        "policy",
        "rbac.authorization.k8s.io",
        "apiextensions.k8s.io",
        "networking.k8s.io",
        "storage.k8s.io",
        "coordination.k8s.io",
        "discovery.k8s.io",
        "scheduling.k8s.io",
        "node.k8s.io",
        "certificates.k8s.io",
        "events.k8s.io",
        "admissionregistration.k8s.io",
        "apiregistration.k8s.io",
        "project.openshift.io",
        "route.openshift.io",
        "apps.openshift.io",
    }
)


def _method_not_allowed() -> ApiError:
    return ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")


def _no_such_path() -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource")


def _unavailable(message: str) -> ApiError:
    return ApiError(503, "ServiceUnavailable", message)


# -- content negotiation -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Output:
    form: str  # "json", "table" or "partial"
    api_version: str = "v1"


def _media_ranges(header: str) -> Iterator[tuple[str, dict[str, str]]]:
    for item in header.split(","):
        mime, *params = (p.strip() for p in item.split(";"))
        if mime:
            yield mime.lower(), {k.strip(): v.strip() for k, _, v in (p.partition("=") for p in params)}


def negotiate(accept: str | None) -> _Output:
    """The first acceptable form in the Accept header: a Table, PartialObjectMetadata or plain JSON."""
    if not accept or not accept.strip():
        return _Output("json")
    for mime, params in _media_ranges(accept):
        if mime == protobuf.MEDIA_TYPE and "as" not in params:
            return _Output("json")  # send_json encodes it for a client that takes nothing else
        if mime not in ("application/json", "application/*", "*/*"):
            continue
        as_ = params.get("as")
        if as_ is None:
            return _Output("json")
        if params.get("g") != "meta.k8s.io" or params.get("v") not in ("v1", "v1beta1"):
            continue  # e.g. aggregated discovery: fall through to a later choice
        if as_ == "Table":
            return _Output("table", f"meta.k8s.io/{params['v']}")
        if as_ in ("PartialObjectMetadata", "PartialObjectMetadataList"):
            return _Output("partial", f"meta.k8s.io/{params['v']}")
    raise ApiError(406, "NotAcceptable", f"only the following media types are accepted: application/json ({accept})")


# -- requests ----------------------------------------------------------------------------------------------------


@dataclass
class _Request:
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


def _validate_name(rt: ResourceType, name: str) -> None:
    if name in (".", "..") or "/" in name or "%" in name:
        raise bad_request(f'"{name}" may not be a name: names may not be "." or "..", nor contain "/" or "%"')
    if rt.group != "rbac.authorization.k8s.io" and (len(name) > 253 or not _SUBDOMAIN.match(name)):
        raise invalid(
            rt.kind,
            name,
            f'metadata.name: Invalid value: "{name}": '
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
            "'.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for "
            r"validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
            rt.group,
        )


# Kinds whose DELETE answers with the deleted object rather than a Status, as in kube-apiserver (the official
# client decodes `delete_namespaced_pod` as a V1Pod, `delete_namespaced_service` as a V1Service, …).
RETURNS_DELETED_OBJECT = frozenset({
    "/pods", "/services", "/serviceaccounts", "/persistentvolumeclaims", "/persistentvolumes", "/podtemplates",
    "/resourcequotas", "/namespaces", "apiextensions.k8s.io/customresourcedefinitions",
})  # fmt: skip


def _deleted_answer(rt: ResourceType, obj: Obj) -> Obj:
    return obj if rt.key in RETURNS_DELETED_OBJECT else _status_success(rt, obj)


def _status_success(rt: ResourceType, obj: Obj) -> Obj:
    meta = obj.get("metadata") or {}
    details = {"name": meta.get("name"), "group": rt.group, "kind": rt.plural, "uid": meta.get("uid")}
    if not rt.group:
        del details["group"]
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}


def _encode_continue(rv: int, key: tuple[str, str]) -> str:
    raw = json.dumps({"rv": rv, "ns": key[0], "name": key[1]}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_continue(token: str) -> tuple[str, str]:
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        return str(data["ns"]), str(data["name"])
    except (ValueError, KeyError, TypeError) as err:
        raise bad_request("continue key is not valid") from err


def _obj_key(obj: Obj) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


class _Api:
    """The REST semantics, independent of HTTP plumbing: each verb returns (code, document)."""

    def __init__(
        self, store: Store, hooks: PodHooks | None, token: str, bookmark_interval: float, namespace_grace: float
    ) -> None:
        self.store = store
        self.hooks = hooks
        self.token = token
        self.bookmark_interval = bookmark_interval
        self.namespace_grace = namespace_grace
        self.stopping = threading.Event()
        self.address = ""
        self.namespaces = NamespaceTerminator(store, namespace_grace)

    @property
    def registry(self) -> Registry:
        return self.store.registry

    def authorized(self, header: str | None) -> bool:
        if not header or not header.startswith("Bearer "):
            return False
        return hmac.compare_digest(header[len("Bearer ") :].strip().encode(), self.token.encode())

    # -- routing ---------------------------------------------------------------------------------------------

    def discovery(self, segments: list[str]) -> Obj | None:
        """The discovery document at `segments`, or None when the path is not a discovery path."""
        if segments == ["version"]:
            return discovery.version_info()
        if segments == ["api"]:
            return discovery.api_versions(self.address)
        if segments == ["apis"]:
            return discovery.api_group_list(self.registry)
        if len(segments) == 2 and segments[0] == "api":
            found = discovery.resource_list(self.registry, "", segments[1])
        elif len(segments) == 2 and segments[0] == "apis":
            found = discovery.api_group(self.registry, segments[1])
        elif len(segments) == 3 and segments[0] == "apis":
            found = discovery.resource_list(self.registry, segments[1], segments[2])
        else:
            return None
        if found is None:
            raise _no_such_path()
        return found

    def parse(self, method: str, raw_path: str, query: str, body: bytes, content_type: str) -> _Request:
        raw = [s for s in raw_path.split("/") if s != ""]
        segments = [unquote(s) for s in raw]
        if segments[:1] == ["api"] and len(segments) >= 3:
            group, version, rest, offset = "", segments[1], segments[2:], 2
        elif segments[:1] == ["apis"] and len(segments) >= 4:
            group, version, rest, offset = segments[1], segments[2], segments[3:], 3
        else:
            raise _no_such_path()
        watch = rest[:1] == ["watch"]
        if watch:
            rest, offset = rest[1:], offset + 1
        namespace: str | None = None
        if rest[:1] == ["namespaces"] and len(rest) >= 3:
            inner = self.registry.get(group, version, rest[2])
            if inner is not None and inner.namespaced:
                namespace, rest, offset = rest[1], rest[2:], offset + 2
            elif not (group == "" and len(rest) == 3):  # /api/v1/namespaces/{name}/status is the namespace's own
                raise _no_such_path()
        if not rest:
            raise _no_such_path()
        rt = self.registry.get(group, version, rest[0])
        if rt is None:
            raise _no_such_path()
        if namespace is not None and not rt.namespaced:
            raise _no_such_path()
        request = _Request(
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
            raise _no_such_path()
        if request.sub is not None and request.sub not in rt.subresources:
            raise _no_such_path()
        if request.name is not None and rt.namespaced and namespace is None:
            raise _no_such_path()  # a namespaced object is only addressed inside its namespace
        if request.flag("watch"):
            request.watch = True
        return request

    # -- reads -----------------------------------------------------------------------------------------------

    def get(self, req: _Request) -> Obj:
        assert req.name is not None
        obj = read_defaults(self.store, req.rt, self.store.get(req.rt, req.namespace, req.name))
        if req.sub == "scale":
            return _scale_of(obj)
        return obj

    def list(self, req: _Request) -> tuple[list[Obj], int, str]:
        items, rv = self.store.list(req.rt, req.namespace, req.q("labelSelector"), req.q("fieldSelector"))
        items = [read_defaults(self.store, req.rt, item) for item in items]
        token = req.q("continue")
        if token:
            after = _decode_continue(token)
            items = [i for i in items if _obj_key(i) > after]
        limit = req.integer("limit")
        next_token = ""
        if limit and limit > 0 and len(items) > limit:
            items = items[:limit]
            next_token = _encode_continue(rv, _obj_key(items[-1]))
        return items, rv, next_token

    # -- writes ----------------------------------------------------------------------------------------------

    def _body_object(self, req: _Request) -> Obj:
        obj = parse_body(req.body, req.content_type)
        if not isinstance(obj, dict):
            raise bad_request("the request body must be a JSON object")
        version, kind = obj.get("apiVersion"), obj.get("kind")
        if version and version != req.rt.api_version and req.sub is None:
            raise bad_request(
                f"the API version in the data ({version}) does not match the expected API version "
                f"({req.rt.api_version})"
            )
        if kind and kind != req.rt.kind and req.sub is None:
            raise bad_request(f"the kind in the data ({kind}) does not match the expected kind ({req.rt.kind})")
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise bad_request("metadata must be an object")
        ns = meta.get("namespace")
        if req.rt.namespaced and ns and req.namespace and ns != req.namespace:
            raise bad_request("the namespace of the provided object does not match the namespace sent on the request")
        if req.sub != "scale":
            openapi.check_fields(self.store, req.rt, obj, req.q("fieldValidation"))
        return obj

    def _manager(self, req: _Request) -> str:
        """The field manager of a write: ?fieldManager=, else the client's program as its User-Agent names it."""
        named = req.q("fieldManager")
        if named is not None and len(named) > 128:
            raise _invalid_options(req, "fieldManager: Too long: may not be more than 128 bytes")
        return named or fieldmanager.user_agent_manager(req.user_agent)

    def create(self, req: _Request) -> Obj:
        obj = self._body_object(req)
        meta = obj["metadata"]
        for server_set in ("resourceVersion", "uid", "creationTimestamp", "deletionTimestamp", "selfLink"):
            meta.pop(server_set, None)
        if meta.get("name"):
            _validate_name(req.rt, meta["name"])
        self._check_not_terminating(req.rt, req.namespace or meta.get("namespace"), meta.get("name") or "")
        status = initial_status(req.rt, obj)  # kube-apiserver ignores a status sent with a create
        if status is None:
            obj.pop("status", None)
        else:
            obj["status"] = status
        return self.store.create(req.rt, obj, req.namespace, manager=self._manager(req), dry_run=req.dry_run)

    def update(self, req: _Request) -> Obj:
        assert req.name is not None
        obj = self._body_object(req)
        meta = obj["metadata"]
        if meta.get("name") and meta["name"] != req.name:
            raise bad_request(
                f"the name of the object ({meta['name']}) does not match the name on the URL ({req.name})"
            )
        meta["name"] = req.name
        if req.sub == "scale":
            return self._write_scale(req, obj)
        return self.store.update(
            req.rt, obj, req.namespace, subresource=req.sub, manager=self._manager(req), dry_run=req.dry_run
        )

    def patch(self, req: _Request) -> tuple[int, Obj]:
        assert req.name is not None
        patch_type = req.content_type.split(";")[0].strip().lower()
        if patch_type not in PATCH_TYPES:
            raise ApiError(
                415,
                "UnsupportedMediaType",
                f"the body of the request was in an unknown format - "
                f"accepted media types include: {', '.join(PATCH_TYPES)}",
            )
        if patch_type == STRATEGIC_PATCH and req.rt.group not in _STRATEGIC_GROUPS:
            raise ApiError(
                415,
                "UnsupportedMediaType",
                "the body of the request was in an unknown format - "
                "accepted media types include: application/json-patch+json, application/merge-patch+json, "
                "application/apply-patch+yaml",
            )
        if patch_type == APPLY_PATCH and not req.q("fieldManager"):
            raise _invalid_options(req, "fieldManager: Required value: is required for apply patch")
        if patch_type != APPLY_PATCH and "force" in req.query:
            raise _invalid_options(req, "force: Forbidden: may not be specified for non-apply patch")
        manager = self._manager(req)
        document = parse_body(req.body, patch_type)
        if req.sub != "scale":
            openapi.check_fields(self.store, req.rt, document, req.q("fieldValidation"))
        for attempt in range(PATCH_RETRIES):
            current = self.store.try_get(req.rt, req.namespace, req.name)
            if current is None:
                if patch_type == APPLY_PATCH and req.sub is None:
                    return 201, self._apply_create(req, document, manager)
                raise not_found(req.rt.plural, req.name, req.rt.group)
            if req.sub == "scale":
                scale = apply_patch(_scale_of(current), document, patch_type)
                return 200, self._write_scale(req, scale, current)
            applied = patch_type == APPLY_PATCH
            if applied:
                patched = self._server_side_apply(req, current, document, manager)
            else:
                patched = apply_patch(current, document, patch_type)
            meta = patched.setdefault("metadata", {})
            if not isinstance(meta, dict):
                raise bad_request("metadata must be an object")
            if meta.get("name", req.name) != req.name:
                raise bad_request("the name of the object does not match the name on the URL")
            meta["name"] = req.name
            precondition = str(meta.get("resourceVersion", "")) != current["metadata"]["resourceVersion"]
            try:
                updated = self.store.update(
                    req.rt,
                    patched,
                    req.namespace,
                    subresource=req.sub,
                    manager=manager,
                    applied=applied,
                    dry_run=req.dry_run,
                )
                return 200, updated
            except ApiError as err:
                # A write between our read and our update: re-apply the patch, unless it pinned a resourceVersion.
                if err.reason != "Conflict" or err.details.get("causes") or precondition:
                    raise
                if attempt == PATCH_RETRIES - 1:
                    raise
        raise conflict(req.rt.plural, req.name, req.rt.group)  # pragma: no cover - loop always returns or raises

    def _server_side_apply(self, req: _Request, current: Obj, document: Any, manager: str) -> Obj:
        """The object after applying `document` with field ownership (409 on a conflict unless ?force=true)."""
        if not isinstance(document, dict):
            raise bad_request("the applied configuration must be an object")
        version, kind = document.get("apiVersion"), document.get("kind")
        if req.sub is None and (version != req.rt.api_version or kind != req.rt.kind):
            # kube-apiserver needs both, and they must name what the URL names.
            raise bad_request(
                f"the API version in the data ({version}) does not match the expected API version "
                f"({req.rt.api_version})"
                if version != req.rt.api_version
                else f"the kind in the data ({kind}) does not match the expected kind ({req.rt.kind})"
            )
        schema = self.store.field_schema(req.rt)
        return fieldmanager.apply(
            current,
            document,
            fieldmanager.managers_of(current),
            manager,
            req.rt.api_version,
            schema,
            force=req.flag("force"),
            subresource=req.sub or "",
        )

    def _apply_create(self, req: _Request, document: Any, manager: str) -> Obj:
        """Apply to an object that does not exist: create it, owned by the applier."""
        assert req.name is not None
        if not isinstance(document, dict):
            raise bad_request("the applied configuration must be an object")
        body = json.dumps({**document, "metadata": {**(document.get("metadata") or {}), "name": req.name}}).encode()
        create = _Request("POST", req.rt, req.namespace, None, None, False, req.query, body, "application/json")
        obj = self._body_object(create)
        meta = obj["metadata"]
        for server_set in ("resourceVersion", "uid", "creationTimestamp", "deletionTimestamp", "selfLink"):
            meta.pop(server_set, None)
        _validate_name(req.rt, req.name)
        self._check_not_terminating(req.rt, req.namespace or meta.get("namespace"), req.name)
        schema = self.store.field_schema(req.rt)
        created = fieldmanager.apply({}, obj, [], manager, req.rt.api_version, schema, force=True)
        status = initial_status(req.rt, created)
        if status is None:
            created.pop("status", None)
        else:
            created["status"] = status
        return self.store.create(req.rt, created, req.namespace, applied=True, dry_run=req.dry_run)

    def _write_scale(self, req: _Request, scale: Obj, current: Obj | None = None) -> Obj:
        assert req.name is not None
        obj = current or self.store.get(req.rt, req.namespace, req.name)
        replicas = (scale.get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or replicas < 0:
            raise ApiError(422, "Invalid", f'Scale "{req.name}" is invalid: spec.replicas: must be a non-negative int')
        wanted_rv = (scale.get("metadata") or {}).get("resourceVersion")
        if wanted_rv and str(wanted_rv) != obj["metadata"]["resourceVersion"]:
            raise conflict(req.rt.plural, req.name, req.rt.group)
        obj.setdefault("spec", {})["replicas"] = replicas
        updated = self.store.update(req.rt, obj, req.namespace, manager=self._manager(req), dry_run=req.dry_run)
        return _scale_of(updated)

    def delete(self, req: _Request) -> Obj:
        assert req.name is not None
        options = parse_body(req.body, "application/json") if req.body.strip() else {}
        options = options if isinstance(options, dict) else {}
        current = self.store.get(req.rt, req.namespace, req.name)
        preconditions = options.get("preconditions") or {}
        for key, label in (("uid", "UID"), ("resourceVersion", "ResourceVersion")):
            if preconditions.get(key) and str(preconditions[key]) != str(current["metadata"].get(key)):
                why = (
                    f"Precondition failed: {label} in precondition: {preconditions[key]}, "
                    f"{label} in object meta: {current['metadata'].get(key)}"
                )
                raise conflict(req.rt.plural, req.name, req.rt.group, why)
        dry = req.dry_run or "All" in (options.get("dryRun") or [])
        policy = req.q("propagationPolicy") or options.get("propagationPolicy")
        orphan = req.q("orphanDependents") or options.get("orphanDependents")
        if policy is None and orphan is not None:
            policy = "Orphan" if str(orphan).lower() == "true" else "Background"
        if policy not in (None, "Background", "Foreground", "Orphan"):
            raise _invalid_options(
                req,
                f'propagationPolicy: Unsupported value: "{policy}": supported values: '
                '"Foreground", "Background", "Orphan", "nil"',
                kind="DeleteOptions",
            )
        propagation = cast(Propagation | None, policy)
        result = self.store.delete(req.rt, req.namespace, req.name, propagation=propagation, dry_run=dry)
        if dry:
            return _deleted_answer(req.rt, result)
        still = self.store.try_get(req.rt, req.namespace, req.name)
        if still is not None and still["metadata"].get("uid") == result["metadata"].get("uid"):
            # Only marked (finalizers, foreground deletion, a namespace): kube-apiserver answers the object.
            if req.rt.key == "/namespaces":
                self.namespaces.start(req.name)
                return self.store.try_get(req.rt, None, req.name) or still
            return still
        return _deleted_answer(req.rt, result)

    # -- namespace lifecycle ---------------------------------------------------------------------------------
    # As in Kubernetes, a deleted namespace is Terminating until the namespace controller (namespaces.py) has
    # deleted its content and removed its "kubernetes" finalizer: objects in it can still be deleted (`kubectl
    # delete -f` of a file holding a Namespace and what is in it succeeds for every object), nothing new can be
    # created in it.

    def finish_terminating(self) -> None:
        """At shutdown: give pending namespace deletions a last pass rather than leave them to a stopped timer."""
        self.namespaces.stop()

    def _check_not_terminating(self, rt: ResourceType, namespace: str | None, name: str) -> None:
        if not rt.namespaced or not namespace:
            return
        ns = self.store.try_get(self.registry.by_key("/namespaces"), None, namespace)
        if ns is not None and (ns.get("status") or {}).get("phase") == "Terminating":
            why = f"unable to create new content in namespace {namespace} because it is being terminated"
            cause = {"reason": "NamespaceTerminating", "message": why, "field": "metadata.namespace"}
            raise forbidden_on(rt.plural, name, why, rt.group, [cause])

    def delete_collection(self, req: _Request) -> Obj:
        items, _ = self.store.list(req.rt, req.namespace, req.q("labelSelector"), req.q("fieldSelector"))
        if not req.dry_run:
            for obj in items:
                with contextlib.suppress(ApiError):  # already gone, e.g. with its owner
                    self.store.delete(req.rt, obj["metadata"].get("namespace"), obj["metadata"]["name"])
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "details": {"group": req.rt.group, "kind": req.rt.plural},
        }


def _invalid_options(req: _Request, message: str, kind: str = "") -> ApiError:
    """422 about the request's options (PatchOptions, CreateOptions, DeleteOptions …), as kube-apiserver words it."""
    if not kind:
        kind = {"PATCH": "PatchOptions", "PUT": "UpdateOptions", "DELETE": "DeleteOptions"}.get(
            req.method, "CreateOptions"
        )
    return invalid(kind, "", message, "meta.k8s.io")


_SCALE_META = ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")


def _scale_of(obj: Obj) -> Obj:
    meta = obj["metadata"]
    selector = (obj.get("spec") or {}).get("selector") or {}
    labels = ",".join(f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items()))
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {k: meta[k] for k in _SCALE_META if k in meta},
        "spec": {"replicas": (obj.get("spec") or {}).get("replicas", 1)},
        "status": {"replicas": int((obj.get("status") or {}).get("replicas", 0) or 0), "selector": labels},
    }


# -- HTTP ---------------------------------------------------------------------------------------------------------


_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def _error_page(status: int, reason: str) -> tuple[list[transport.Header], bytes]:
    """A request too malformed to route gets a Status too, never a bare page."""
    reasons = {400: "BadRequest", 413: "RequestEntityTooLarge", 414: "RequestURITooLong", 431: "BadRequest"}
    message = f"the request could not be parsed: {reason}"
    body = json.dumps(ApiError(status, reasons.get(status, "BadRequest"), message).status()).encode("utf-8")
    return [("Content-Type", "application/json"), ("Cache-Control", "no-cache, private")], body


class _Handler:
    """One request: routed to discovery, OpenAPI, the resource verbs or a pod stream, and answered on `ex`."""

    def __init__(self, api: _Api, ex: transport.Exchange) -> None:
        self.api = api
        self.ex = ex
        self.headers = ex.headers
        self.path = ex.request.target
        self.command = ex.request.method

    @classmethod
    def application(cls, api: _Api) -> transport.Application:
        def serve(ex: transport.Exchange) -> None:
            cls(api, ex)._dispatch(ex.request.method)

        return serve

    # -- plumbing --------------------------------------------------------------------------------------------

    def _read_body(self) -> bytes:
        try:
            return self.ex.read_body(MAX_BODY)
        except transport.BodyTooLarge:
            raise ApiError(413, "RequestEntityTooLarge", "the request body is too large") from None

    def send_json(self, code: int, doc: Any, content_type: str = "application/json") -> None:
        encoded = None
        if content_type == "application/json" and protobuf.accepts_only_protobuf(self.headers.get("Accept")):
            encoded = protobuf.encode(doc)  # None for kinds with no protobuf form (custom resources): JSON then
        data = encoded if encoded is not None else json.dumps(doc, separators=(",", ":")).encode("utf-8")
        content_type = protobuf.MEDIA_TYPE if encoded is not None else content_type
        self.ex.respond(code, [("Content-Type", content_type), ("Cache-Control", "no-cache, private")], data)

    def _send_text(self, code: int, text: str) -> None:
        self.ex.respond(code, [("Content-Type", "text/plain; charset=utf-8")], text.encode("utf-8"))

    def _dispatch(self, method: str) -> None:
        try:
            self._route(method)
        except ApiError as err:
            if self.ex.started:
                self.ex.close_after()
            else:
                self.send_json(err.code, err.status())
        except OSError:  # the client went away (BrokenPipe, ConnectionReset, Timeout, SSLError)
            _log.debug("%s %s: the client went away", method, self.path, exc_info=True)
            self.ex.close_after()
        except Exception:
            _log.exception("%s %s failed", method, self.path)
            self.ex.close_after()
            if not self.ex.started:
                with contextlib.suppress(OSError):
                    self.send_json(
                        500,
                        ApiError(
                            500, "InternalError", "an error on the server prevented the request from succeeding"
                        ).status(),
                    )

    def _route(self, method: str) -> None:
        parts = urlsplit(self.path)
        segments = [unquote(s) for s in parts.path.split("/") if s]
        if segments[:1] and segments[0] in HEALTH and method in ("GET", "HEAD"):
            self._send_text(200, "ok")
            return
        if not self.api.authorized(self.headers.get("Authorization")):
            self.ex.close_after()  # its body, if any, is left unread
            raise ApiError(401, "Unauthorized", "Unauthorized")
        if method not in _KNOWN_METHODS:
            self.ex.close_after()  # a body, if any, in a framing we do not know
            raise _method_not_allowed()
        body = self._read_body() if method in ("POST", "PUT", "PATCH", "DELETE") else b""
        access.set_requester(access.impersonated(access.ADMIN, self.headers))
        if not segments:
            if method != "GET":
                raise _method_not_allowed()
            self.send_json(200, {"paths": ["/api", "/api/v1", "/apis", "/healthz", "/livez", "/readyz", "/version"]})
            return
        if segments[0] == "openapi":
            self._serve_openapi(method, segments)
            return
        found = self.api.discovery(segments)
        if found is not None:
            if method not in ("GET", "HEAD"):
                raise _method_not_allowed()
            self.send_json(200, found)
            return
        content_type = self.headers.get("Content-Type") or "application/json"
        req = self.api.parse(method, parts.path, parts.query, body, content_type)
        req.user_agent = self.headers.get("User-Agent") or ""
        self._serve_resource(req)

    def _serve_openapi(self, method: str, segments: list[str]) -> None:
        # /openapi/v2 and /openapi/v3[/<group version>], built and cached by kalab.lab.apiserver.openapi.
        if method not in ("GET", "HEAD"):
            raise _method_not_allowed()
        answer = openapi.respond(
            self.api.store,
            segments,
            urlsplit(self.path).query,
            self.headers.get("Accept") or "",
            self.headers.get("If-None-Match") or "",
        )
        if answer is None:
            raise _no_such_path()
        self.ex.respond(answer.status, list(answer.headers), answer.body)

    def _serve_resource(self, req: _Request) -> None:
        api, method = self.api, req.method
        user = access.requester() or access.ADMIN
        if user != access.ADMIN:  # an impersonated user may do only what RBAC grants
            attrs = access.request_attributes(method, req.rt, req.namespace, req.name, req.sub, req.watch)
            access.check(api.store, user, attrs)
        if req.rt.kind == "Pod" and req.sub in ("log", "exec", "attach", "portforward", "proxy"):
            self._serve_pod_stream(req)
            return
        if req.sub == "proxy":
            raise _unavailable(f"the lab does not proxy to {req.rt.plural}")
        if req.body and protobuf.is_protobuf(req.content_type):
            # kubectl's generator commands (`kubectl create namespace|configmap|secret|deployment|role …`) send
            # protobuf: read it as the JSON it stands for, so every verb below sees one form.
            req.body = protobuf.body_as_json(req.body, req.rt.api_version, req.rt.kind if req.sub is None else "")
            req.content_type = "application/json"
        if req.body and not _readable_body(req.content_type):
            raise ApiError(
                415,
                "UnsupportedMediaType",
                f"the body of the request was in an unknown format ({req.content_type}) - accepted media types "
                f"include: application/json, application/yaml, {protobuf.MEDIA_TYPE}, {', '.join(PATCH_TYPES)}",
            )
        if access.serves(req.rt):  # create-only reviews: answered, never stored
            if method != "POST" or req.name is not None or req.sub is not None:
                raise _method_not_allowed()
            self.send_json(201, access.review(api.store, req.rt, api._body_object(req), req.namespace, user))
            return
        if method in ("GET", "HEAD"):
            output = negotiate(self.headers.get("Accept"))
            if req.watch:
                self._watch(req, output)
            elif req.name is None:
                items, rv, token = api.list(req)
                self._send_list(req, output, items, rv, token)
            else:
                obj = api.get(req)
                self._send_object(req, output, obj)
        elif method == "POST" and req.name is None:
            obj = api.create(req)
            self.send_json(201, obj)
        elif method == "PUT" and req.name is not None:
            self.send_json(200, api.update(req))
        elif method == "PATCH" and req.name is not None:
            code, obj = api.patch(req)
            self.send_json(code, obj)
        elif method == "DELETE" and req.sub is None:
            self.send_json(200, api.delete(req) if req.name is not None else api.delete_collection(req))
        else:
            raise _method_not_allowed()

    # -- responses -------------------------------------------------------------------------------------------

    def _send_object(self, req: _Request, output: _Output, obj: Obj) -> None:
        if output.form == "table" and req.sub is None:
            rv = obj["metadata"].get("resourceVersion", "")
            doc = tables.table(req.rt, [obj], req.q("includeObject", "Metadata") or "Metadata", rv, output.api_version)
            self.send_json(200, doc)
        elif output.form == "partial" and req.sub is None:
            self.send_json(200, tables.partial_metadata(obj, output.api_version))
        else:
            self.send_json(200, obj)

    def _send_list(self, req: _Request, output: _Output, items: list[Obj], rv: int, token: str) -> None:
        include = req.q("includeObject", "Metadata") or "Metadata"
        if output.form == "table":
            self.send_json(200, tables.table(req.rt, items, include, str(rv), output.api_version, continue_token=token))
            return
        meta: dict[str, Any] = {"resourceVersion": str(rv)}
        if token:
            meta["continue"] = token
        if output.form == "partial":
            partial = [tables.partial_metadata(i, output.api_version) for i in items]
            doc = {
                "kind": "PartialObjectMetadataList",
                "apiVersion": output.api_version,
                "metadata": meta,
                "items": partial,
            }
        else:
            doc = {"kind": req.rt.list_kind, "apiVersion": req.rt.api_version, "metadata": meta, "items": items}
        self.send_json(200, doc)

    # -- watch -----------------------------------------------------------------------------------------------

    def _write_chunk(self, data: bytes) -> None:
        self.ex.write(data)

    def _client_gone(self) -> bool:
        """During a watch the client sends nothing, so a readable socket means it closed (or broke) the stream."""
        try:
            readable, _, _ = select.select([self.ex.sock], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(readable)

    def _watch(self, req: _Request, output: _Output) -> None:
        api = self.api
        rt = req.rt
        fields = req.q("fieldSelector") or ""
        if req.name is not None:
            fields = ",".join(f for f in (fields, f"metadata.name={req.name}") if f)
        labels = req.q("labelSelector")
        timeout = float(req.integer("timeoutSeconds") or WATCH_TIMEOUT)
        bookmarks = req.flag("allowWatchBookmarks")
        include = req.q("includeObject", "Metadata") or "Metadata"
        since_text = req.q("resourceVersion") or ""
        # Streaming list (client-go's WatchList, which kubectl uses): the current objects as ADDED, then a bookmark
        # marking the end of the initial events, then changes. Without the parameter the same applies to a watch
        # from no resourceVersion ("get state and start at most recent").
        streaming = req.flag("sendInitialEvents")
        send_initial = streaming or ("sendInitialEvents" not in req.query and since_text in ("", "0"))
        initial: list[Obj] = []
        if send_initial:
            initial, since = api.store.list(rt, req.namespace, labels, fields or None)
        elif since_text in ("", "0"):
            since = api.store.resource_version
        else:
            try:
                since = int(since_text)
            except ValueError as err:
                raise bad_request(f"invalid resource version: {since_text!r}") from err
        events = api.store.watch(rt, req.namespace, since, labels, fields or None, timeout, WATCH_TICK, api.stopping)
        # Like kube-apiserver, answer 200 at once; a resourceVersion too old arrives as an ERROR event (410).
        self.ex.start_stream(
            200,
            [
                ("Content-Type", "application/json"),
                ("Transfer-Encoding", "chunked"),
                ("Cache-Control", "no-cache, private"),
            ],
        )
        columns_sent = False

        def render(obj: Obj) -> Obj:
            nonlocal columns_sent
            if output.form == "table":
                doc = tables.table(
                    rt,
                    [obj],
                    include,
                    obj["metadata"].get("resourceVersion", ""),
                    output.api_version,
                    with_columns=not columns_sent,
                )
                columns_sent = True
                return doc
            if output.form == "partial":
                return tables.partial_metadata(obj, output.api_version)
            return read_defaults(api.store, rt, obj)

        def send(type_: str, obj: Obj) -> None:
            self._write_chunk(json.dumps({"type": type_, "object": obj}, separators=(",", ":")).encode() + b"\n")

        try:
            for obj in initial:
                send("ADDED", render(obj))
            if streaming:
                send(
                    "BOOKMARK",
                    {
                        "kind": rt.kind,
                        "apiVersion": rt.api_version,
                        "metadata": {
                            "resourceVersion": str(since),
                            "annotations": {"k8s.io/initial-events-end": "true"},
                        },
                    },
                )
            last_bookmark = time.monotonic()
            for event in events:
                if event.type == "BOOKMARK":
                    if self._client_gone():
                        return
                    now = time.monotonic()
                    if bookmarks and now - last_bookmark >= api.bookmark_interval:
                        last_bookmark = now
                        send("BOOKMARK", event.object)
                    continue
                send(event.type, render(event.object))
        except ApiError as err:
            send("ERROR", err.status())
        finally:
            with contextlib.suppress(OSError, h11.LocalProtocolError):
                self.ex.end()

    # -- pod streams -----------------------------------------------------------------------------------------

    def _serve_pod_stream(self, req: _Request) -> None:
        assert req.name is not None and req.namespace is not None
        namespace, name, port = req.namespace, req.name, 0
        if req.sub == "proxy":
            name, port = _proxy_target(req.proxy_target)
        elif req.method not in (("GET",) if req.sub == "log" else ("GET", "POST")):
            raise _method_not_allowed()
        pod = self.api.store.get(req.rt, namespace, name)
        hooks = self.api.hooks
        if hooks is None:
            raise _unavailable("no kubelet is running in this lab, so pods cannot be reached")
        # Everything that can still fail with a plain error response is worked out before the stream starts.
        call: Callable[[], None]
        if req.sub == "log":
            log = LogRequest(
                namespace=namespace,
                pod=name,
                container=req.q("container"),
                follow=req.flag("follow"),
                previous=req.flag("previous"),
                timestamps=req.flag("timestamps"),
                tail_lines=req.integer("tailLines"),
                since_seconds=req.integer("sinceSeconds"),
            )
            call = functools.partial(streams.serve_log, self.ex, hooks, log)
        elif req.sub == "exec":
            command = ExecRequest(
                namespace=namespace,
                pod=name,
                container=req.q("container"),
                command=tuple(req.query.get("command", [])),
                stdin=req.flag("stdin"),
                tty=req.flag("tty"),
            )
            call = functools.partial(streams.serve_exec, self.ex, hooks, command)
        elif req.sub == "attach":
            attaching = attach_hooks(hooks)
            if attaching is None:
                raise _unavailable("this lab's kubelet cannot attach to containers")
            request = ExecRequest(namespace, name, req.q("container"), (), req.flag("stdin"), req.flag("tty"))
            call = functools.partial(streams.serve_exec, self.ex, attaching, request)
        elif req.sub == "portforward":
            if not (pod.get("spec") or {}).get("nodeName"):
                raise bad_request(f"pod {name} does not have a host assigned")
            uid = str(pod["metadata"].get("uid", ""))
            call = functools.partial(portforward.serve_port_forward, self.ex, hooks, namespace, name, uid)
        else:
            port = port or _default_port(pod, req.proxy_target)
            call = functools.partial(
                streams.serve_proxy, self.ex, hooks, namespace, name, port, req.proxy_path, req.method, req.body
            )
        self.ex.close_after()  # the stream owns the connection from here on
        call()


def _readable_body(content_type: str) -> bool:
    mime = content_type.split(";")[0].strip().lower()
    return mime.endswith(("json", "yaml")) or mime in ("", "*/*", "text/plain", "application/octet-stream")


def _proxy_target(target: str) -> tuple[str, int]:
    """`[scheme:]name[:port]` → (name, port or 0 when it must come from the pod)."""
    parts = target.split(":")
    if len(parts) == 3 or (len(parts) == 2 and parts[0] in ("http", "https")):
        parts = parts[1:]
    name = parts[0]
    port_text = parts[1] if len(parts) > 1 else ""
    return name, int(port_text) if port_text.isdigit() else 0


def _default_port(pod: Obj, target: str) -> int:
    """A named port (`test-0:metrics`) from the pod's containers, else its first declared port, else 80."""
    wanted = target.split(":")[-1] if ":" in target else ""
    ports = [p for c in (pod.get("spec") or {}).get("containers") or [] for p in c.get("ports") or []]
    for port in ports:
        if wanted and port.get("name") == wanted:
            return int(port["containerPort"])
    if wanted:
        raise bad_request(f'pod "{pod["metadata"]["name"]}" has no port named "{wanted}"')
    return int(ports[0]["containerPort"]) if ports else 80


# -- serve ---------------------------------------------------------------------------------------------------------


@dataclass
class RunningServer:
    """A serving API server: where it is, how to reach it, and how to stop it."""

    url: str
    port: int
    token: str
    ca_file: Path
    kubeconfig: Path
    host: str
    _server: transport.Server = field(repr=False)
    _api: _Api = field(repr=False)
    _crds: CrdController | None = field(default=None, repr=False)

    @property
    def bound_address(self) -> tuple[str, int]:
        """The listening socket's own address (what the kernel bound), for checks that nothing listens wider."""
        return self._server.address

    def shutdown(self) -> None:
        """Stop accepting, end every watch and connection, and stop the CRD controller. Idempotent."""
        self._api.stopping.set()
        self._server.shutdown()
        self._api.finish_terminating()
        if self._crds is not None:
            self._crds.stop()
            self._crds = None

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.shutdown()


def _tls_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(cert_file), str(key_file))
    context.set_alpn_protocols(["http/1.1"])  # no HTTP/2 here
    return context


def serve(
    store: Store,
    hooks: PodHooks | None,
    state_dir: Path,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    crd_controller: bool = True,
    bookmark_interval: float = 30.0,
    namespace_grace: float = 1.0,
    kubeconfig_extensions: dict[str, dict[str, Any]] | None = None,
    listener: socket.socket | None = None,
) -> RunningServer:
    """Serve `store` over HTTPS on host:port (loopback only; port 0 picks a free one) until `.shutdown()`.

    Writes `pki/` (CA and server certificate) and `kubeconfig` under `state_dir`, all 0600. With `crd_controller`
    (the default) it also starts the controller that serves CRDs found in the store and marks them Established.
    A namespace deleted through the API stays Terminating for `namespace_grace` seconds before it and its content
    are deleted (0: at once). A `listener` (a socket already listening on a loopback address) replaces host:port.
    """
    if not isinstance(ipaddress.ip_address(host), ipaddress.IPv4Address) or not ipaddress.ip_address(host).is_loopback:
        raise ValueError(f"the lab API server listens on loopback only, not {host}")
    if listener is not None:
        host = str(listener.getsockname()[0])
        if not ipaddress.ip_address(host).is_loopback:
            raise ValueError(f"the lab API server listens on loopback only, not {host}")
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    material = make_tls(state_dir / "pki", host)
    token = new_token()
    api = _Api(store, hooks, token, bookmark_interval, namespace_grace)
    if listener is None:
        listener = socket.create_server((host, port), backlog=128)
    server = transport.Server(
        listener,
        _Handler.application(api),
        _error_page,
        _tls_context(material.cert_file, material.key_file),
        idle_timeout=IDLE_TIMEOUT,
        handshake_timeout=HANDSHAKE_TIMEOUT,
        name=f"kalab-apiserver-{listener.getsockname()[1]}",
    )
    bound_port = server.address[1]
    api.address = f"{host}:{bound_port}"
    url = f"https://{host}:{bound_port}"
    kubeconfig = write_kubeconfig(
        state_dir / "kubeconfig", url, token, material.ca_pem, extensions=kubeconfig_extensions
    )
    crds = start_crd_controller(LabContext(store=store, state_dir=state_dir)) if crd_controller else None
    server.start()
    return RunningServer(
        url=url,
        port=bound_port,
        token=token,
        ca_file=material.ca_file,
        kubeconfig=kubeconfig,
        host=host,
        _server=server,
        _api=api,
        _crds=crds,
    )
