"""The verb handlers of the API server: get, list, watch, create, update, patch, delete and deletecollection.

As kube-apiserver's `endpoints/handlers`: each takes the routed request (`routing.ApiRequest`) and answers a document,
or, for watch, streams events on the exchange. What differs by kind is asked of `strategies`; storage is the Store's.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import select
import threading
import time
from typing import Any, cast

import h11

from kalab.lab.apiserver import decoding, fieldmanager, openapi, strategies, tables, transport
from kalab.lab.apiserver.crds import read_defaults
from kalab.lab.apiserver.errors import (
    ApiError,
    FieldError,
    bad_request,
    conflict,
    echo,
    field_invalid,
    invalid,
    not_found,
)
from kalab.lab.apiserver.namespaces import NamespaceTerminator
from kalab.lab.apiserver.negotiation import Output
from kalab.lab.apiserver.patch import APPLY_PATCH, PATCH_TYPES, STRATEGIC_PATCH, apply_patch, parse_body
from kalab.lab.apiserver.routing import ApiRequest
from kalab.lab.apiserver.store import Obj, Propagation, Store
from kalab.model import objects
from kalab.model.wording import shorten

WATCH_TIMEOUT = 1800.0  # kube-apiserver's --min-request-timeout
WATCH_TICK = 1.0  # how often an idle watch checks whether its client went away
PATCH_RETRIES = 5


def encode_continue(rv: int, key: tuple[str, str]) -> str:
    raw = json.dumps({"rv": rv, "ns": key[0], "name": key[1]}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_continue(token: str) -> tuple[str, str]:
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        return str(data["ns"]), str(data["name"])
    except (ValueError, KeyError, TypeError) as err:
        raise bad_request("continue key is not valid") from err


def _obj_key(obj: Obj) -> tuple[str, str]:
    return objects.namespace_of(obj), objects.name_of(obj)


class Handlers:
    """One handler per verb over the store."""

    def __init__(self, store: Store, bookmark_interval: float, namespace_grace: float) -> None:
        self.store = store
        self.bookmark_interval = bookmark_interval
        self.stopping = threading.Event()
        self.namespaces = NamespaceTerminator(store, namespace_grace)

    def get(self, req: ApiRequest) -> Obj:
        assert req.name is not None
        obj = read_defaults(self.store, req.rt, self.store.get(req.rt, req.namespace, req.name))
        if req.sub == "scale":
            return strategies.scale_of(obj)
        return obj

    def list(self, req: ApiRequest) -> tuple[list[Obj], int, str]:
        items, rv = self.store.list(req.rt, req.namespace, req.q("labelSelector"), req.q("fieldSelector"))
        items = [read_defaults(self.store, req.rt, item) for item in items]
        token = req.q("continue")
        if token:
            after = decode_continue(token)
            items = [i for i in items if _obj_key(i) > after]
        limit = req.integer("limit")
        next_token = ""
        if limit and limit > 0 and len(items) > limit:
            items = items[:limit]
            next_token = encode_continue(rv, _obj_key(items[-1]))
        return items, rv, next_token

    # -- writes ----------------------------------------------------------------------------------------------

    def body_object(self, req: ApiRequest) -> Obj:
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
        if obj.get("metadata") is None:  # null decodes as no metadata at all
            obj["metadata"] = {}
        if req.sub != "scale":
            decoding.check_body(req.rt, obj)  # a value of the wrong type: 400, as Go's decoder answers
        else:
            problem = decoding.definition_error(decoding.SCALE, obj)
            if problem is not None:
                raise bad_request(f'Scale in version "v1" cannot be handled as a Scale: {problem}')
        meta = obj["metadata"]
        ns = meta.get("namespace")
        if req.rt.namespaced and ns and req.namespace and ns != req.namespace:
            raise bad_request("the namespace of the provided object does not match the namespace sent on the request")
        if req.sub != "scale":
            openapi.check_fields(self.store, req.rt, obj, req.q("fieldValidation"))
        return obj

    def _manager(self, req: ApiRequest) -> str:
        """The field manager of a write: ?fieldManager=, else the client's program as its User-Agent names it."""
        named = req.q("fieldManager")
        if named is not None and len(named) > 128:
            raise invalid_options(req, "fieldManager: Too long: may not be more than 128 bytes")
        return named or fieldmanager.user_agent_manager(req.user_agent)

    def create(self, req: ApiRequest) -> Obj:
        obj = self.body_object(req)
        meta = obj["metadata"]
        strategies.prepare_for_create(req.rt, obj)
        strategies.check_not_terminating(
            self.store, req.rt, req.namespace or meta.get("namespace"), meta.get("name") or ""
        )
        strategies.set_initial_status(req.rt, obj)
        return self.store.create(
            req.rt, obj, req.namespace, manager=self._manager(req), dry_run=req.dry_run, validate=True
        )

    def update(self, req: ApiRequest) -> Obj:
        assert req.name is not None
        obj = self.body_object(req)
        strategies.prepare_for_update(obj, req.name)
        if req.sub == "scale":
            return self._write_scale(req, obj)
        return self.store.update(
            req.rt,
            obj,
            req.namespace,
            subresource=req.sub,
            manager=self._manager(req),
            dry_run=req.dry_run,
            validate=True,
        )

    def patch(self, req: ApiRequest) -> tuple[int, Obj]:
        assert req.name is not None
        patch_type = req.content_type.split(";")[0].strip().lower()
        if patch_type not in PATCH_TYPES:
            raise ApiError(
                415,
                "UnsupportedMediaType",
                f"the body of the request was in an unknown format - "
                f"accepted media types include: {', '.join(PATCH_TYPES)}",
            )
        if patch_type == STRATEGIC_PATCH and not strategies.allows_strategic_merge(req.rt):
            raise ApiError(
                415,
                "UnsupportedMediaType",
                "the body of the request was in an unknown format - "
                "accepted media types include: application/json-patch+json, application/merge-patch+json, "
                "application/apply-patch+yaml",
            )
        if patch_type == APPLY_PATCH and not req.q("fieldManager"):
            raise invalid_options(req, "fieldManager: Required value: is required for apply patch")
        if patch_type != APPLY_PATCH and "force" in req.query:
            raise invalid_options(req, "force: Forbidden: may not be specified for non-apply patch")
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
                scale = apply_patch(strategies.scale_of(current), document, patch_type)
                problem = decoding.definition_error(decoding.SCALE, scale)
                if problem is not None:
                    raise decoding.patch_invalid(req.rt, req.name, document, problem)
                return 200, self._write_scale(req, scale, current)
            applied = patch_type == APPLY_PATCH
            if applied:
                patched = self._server_side_apply(req, current, document, manager)
            else:
                patched = apply_patch(current, document, patch_type)
            decoding.check_patched(req.rt, req.name, patched, document)
            if patched.get("metadata") is None:  # null decodes as no metadata at all
                patched["metadata"] = {}
            meta = patched["metadata"]
            named = meta.get("name", req.name if applied else "")
            if named != req.name:
                # As kube-apiserver's checkName: a patch may not rename the object, nor drop its name.
                shown = shorten(str(named), 80)
                raise bad_request(f"the name of the object ({shown}) does not match the name on the URL ({req.name})")
            meta["name"] = req.name
            precondition = str(meta.get("resourceVersion", "")) != objects.resource_version_of(current)
            try:
                updated = self.store.update(
                    req.rt,
                    patched,
                    req.namespace,
                    subresource=req.sub,
                    manager=manager,
                    applied=applied,
                    dry_run=req.dry_run,
                    validate=True,
                )
                return 200, updated
            except ApiError as err:
                # A write between our read and our update: re-apply the patch, unless it pinned a resourceVersion.
                if err.reason != "Conflict" or err.details.get("causes") or precondition:
                    raise
                if attempt == PATCH_RETRIES - 1:
                    raise
        raise conflict(req.rt.plural, req.name, req.rt.group)  # pragma: no cover - loop always returns or raises

    def _server_side_apply(self, req: ApiRequest, current: Obj, document: Any, manager: str) -> Obj:
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

    def _apply_create(self, req: ApiRequest, document: Any, manager: str) -> Obj:
        """Apply to an object that does not exist: create it, owned by the applier."""
        assert req.name is not None
        if not isinstance(document, dict):
            raise bad_request("the applied configuration must be an object")
        meta = document.get("metadata") or {}
        # Metadata that is no object is left for decoding to refuse, as for any create.
        named = {**document, "metadata": {**meta, "name": req.name} if isinstance(meta, dict) else meta}
        body = json.dumps(named).encode()
        create = ApiRequest("POST", req.rt, req.namespace, None, None, False, req.query, body, "application/json")
        obj = self.body_object(create)
        strategies.prepare_for_create(req.rt, obj, req.name)
        strategies.check_not_terminating(
            self.store, req.rt, req.namespace or obj["metadata"].get("namespace"), req.name
        )
        schema = self.store.field_schema(req.rt)
        created = fieldmanager.apply({}, obj, [], manager, req.rt.api_version, schema, force=True)
        strategies.set_initial_status(req.rt, created)
        return self.store.create(req.rt, created, req.namespace, applied=True, dry_run=req.dry_run, validate=True)

    def _write_scale(self, req: ApiRequest, scale: Obj, current: Obj | None = None) -> Obj:
        assert req.name is not None
        obj = current or self.store.get(req.rt, req.namespace, req.name)
        replicas = strategies.scale_replicas(req.name, scale)
        wanted_rv = objects.resource_version_of(scale)
        if wanted_rv and wanted_rv != objects.resource_version_of(obj):
            raise conflict(req.rt.plural, req.name, req.rt.group)
        obj.setdefault("spec", {})["replicas"] = replicas
        updated = self.store.update(
            req.rt, obj, req.namespace, manager=self._manager(req), dry_run=req.dry_run, validate=True
        )
        return strategies.scale_of(updated)

    def delete(self, req: ApiRequest) -> Obj:
        assert req.name is not None
        options = parse_body(req.body, "application/json") if req.body.strip() else {}
        options = options if isinstance(options, dict) else {}
        problem = decoding.definition_error(decoding.DELETE_OPTIONS, options)
        if problem is not None:
            raise bad_request(f'DeleteOptions in version "v1" cannot be handled as a DeleteOptions: {problem}')
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
            raise invalid_options(
                req,
                f'propagationPolicy: Unsupported value: "{policy}": supported values: '
                '"Foreground", "Background", "Orphan", "nil"',
                kind="DeleteOptions",
            )
        propagation = cast(Propagation | None, policy)
        result = self.store.delete(req.rt, req.namespace, req.name, propagation=propagation, dry_run=dry)
        if dry:
            return strategies.deleted_answer(req.rt, result)
        still = self.store.try_get(req.rt, req.namespace, req.name)
        if still is not None and still["metadata"].get("uid") == result["metadata"].get("uid"):
            # Only marked (finalizers, foreground deletion, a namespace): kube-apiserver answers the object.
            return strategies.marked_for_deletion(self.store, self.namespaces, req.rt, still)
        return strategies.deleted_answer(req.rt, result)

    def finish_terminating(self) -> None:
        """At shutdown: give pending namespace deletions a last pass rather than leave them to a stopped timer."""
        self.namespaces.stop()

    def delete_collection(self, req: ApiRequest) -> Obj:
        items, _ = self.store.list(req.rt, req.namespace, req.q("labelSelector"), req.q("fieldSelector"))
        if not req.dry_run:
            for obj in items:
                with contextlib.suppress(ApiError):  # already gone, e.g. with its owner
                    self.store.delete(req.rt, obj["metadata"].get("namespace"), objects.name_of(obj))
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "details": {"group": req.rt.group, "kind": req.rt.plural},
        }

    # -- watch -----------------------------------------------------------------------------------------------

    @staticmethod
    def _client_gone(ex: transport.Exchange) -> bool:
        """During a watch the client sends nothing, so a readable socket means it closed (or broke) the stream."""
        try:
            readable, _, _ = select.select([ex.sock], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(readable)

    def watch(self, ex: transport.Exchange, req: ApiRequest, output: Output) -> None:
        """Events as chunked JSON lines until the timeout, the server stopping, or the client leaving."""
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
            initial, since = self.store.list(rt, req.namespace, labels, fields or None)
        elif since_text in ("", "0"):
            since = self.store.resource_version
        else:
            since = parse_resource_version(req, since_text)
        events = self.store.watch(rt, req.namespace, since, labels, fields or None, timeout, WATCH_TICK, self.stopping)
        # Like kube-apiserver, answer 200 at once; a resourceVersion too old arrives as an ERROR event (410).
        ex.start_stream(
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
                    objects.resource_version_of(obj),
                    output.api_version,
                    with_columns=not columns_sent,
                )
                columns_sent = True
                return doc
            if output.form == "partial":
                return tables.partial_metadata(obj, output.api_version)
            return read_defaults(self.store, rt, obj)

        def send(type_: str, obj: Obj) -> None:
            ex.write(json.dumps({"type": type_, "object": obj}, separators=(",", ":")).encode() + b"\n")

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
                    if self._client_gone(ex):
                        return
                    now = time.monotonic()
                    if bookmarks and now - last_bookmark >= self.bookmark_interval:
                        last_bookmark = now
                        send("BOOKMARK", event.object)
                    continue
                send(event.type, render(event.object))
        except ApiError as err:
            send("ERROR", err.status())
        finally:
            with contextlib.suppress(OSError, h11.LocalProtocolError):
                ex.end()


_UNSIGNED = re.compile(r"^[0-9]{1,20}$")


def parse_resource_version(req: ApiRequest, text: str) -> int:
    """A watch's resourceVersion: an unsigned integer, else 422 as kube-apiserver's storage answers (naming the
    resource, as its InterpretWatchError does, and Go's strconv.ParseUint error)."""
    if _UNSIGNED.match(text) and int(text) < 2**64:
        return int(text)
    why = "value out of range" if text.isdigit() else "invalid syntax"
    error = FieldError("FieldValueInvalid", "resourceVersion", text, f"strconv.ParseUint: parsing {echo(text)}: {why}")
    raise field_invalid(req.rt.plural, "", [error], req.rt.group)


def invalid_options(req: ApiRequest, message: str, kind: str = "") -> ApiError:
    """422 about the request's options (PatchOptions, CreateOptions, DeleteOptions …), as kube-apiserver words it."""
    if not kind:
        kind = {"PATCH": "PatchOptions", "PUT": "UpdateOptions", "DELETE": "DeleteOptions"}.get(
            req.method, "CreateOptions"
        )
    return invalid(kind, "", message, "meta.k8s.io")


# -- responses ------------------------------------------------------------------------------------------------


def render_object(req: ApiRequest, output: Output, obj: Obj) -> Obj:
    """A got object in the form the client negotiated."""
    if output.form == "table" and req.sub is None:
        rv = objects.resource_version_of(obj)
        doc = tables.table(req.rt, [obj], req.q("includeObject", "Metadata") or "Metadata", rv, output.api_version)
        return doc
    if output.form == "partial" and req.sub is None:
        return tables.partial_metadata(obj, output.api_version)
    return obj


def render_list(req: ApiRequest, output: Output, items: list[Obj], rv: int, token: str) -> Obj:
    """A listed page in the form the client negotiated."""
    include = req.q("includeObject", "Metadata") or "Metadata"
    if output.form == "table":
        return tables.table(req.rt, items, include, str(rv), output.api_version, continue_token=token)
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
    return doc
