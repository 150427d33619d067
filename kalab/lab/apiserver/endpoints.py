"""The API server's endpoints: what happens to a request between the HTTP layer and the verb handlers.

Health checks answer without credentials; everything else needs the bearer token (401 otherwise) and may
impersonate (`access`). Then, as kube-apiserver's handler chain does: the root path list, OpenAPI (`openapi`),
discovery and resource paths (`routing`), RBAC for impersonated users, request bodies made readable (protobuf read
as JSON, 415 for what is not), access reviews, the verbs (`handlers`) with the form Accept asks for
(`negotiation`), and pods' log/exec/attach/portforward/proxy handed to `streams` and `portforward`. Errors become
Status objects with their code.
"""

from __future__ import annotations

import contextlib
import functools
import hmac
import json
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote, urlsplit

from kalab.lab.apiserver import access, openapi, portforward, protobuf, routing, streams, transport
from kalab.lab.apiserver.attach import attach_hooks
from kalab.lab.apiserver.errors import ApiError, bad_request
from kalab.lab.apiserver.handlers import Handlers, render_list, render_object
from kalab.lab.apiserver.hooks import ExecRequest, LogRequest, PodHooks
from kalab.lab.apiserver.negotiation import negotiate, readable_body
from kalab.lab.apiserver.patch import PATCH_TYPES
from kalab.lab.apiserver.routing import ApiRequest
from kalab.lab.apiserver.store import Store
from kalab.model import objects

_log = logging.getLogger(__name__)

MAX_BODY = 16 * 1024 * 1024


class Api:
    """What every request shares: the store, the kubelet's hooks, the bearer token and the verb handlers."""

    def __init__(
        self, store: Store, hooks: PodHooks | None, token: str, bookmark_interval: float, namespace_grace: float
    ) -> None:
        self.store = store
        self.hooks = hooks
        self.token = token
        self.address = ""
        self.handlers = Handlers(store, bookmark_interval, namespace_grace)

    def authorized(self, header: str | None) -> bool:
        if not header or not header.startswith("Bearer "):
            return False
        return hmac.compare_digest(header[len("Bearer ") :].strip().encode(), self.token.encode())


def error_page(status: int, reason: str) -> tuple[list[transport.Header], bytes]:
    """A request too malformed to route gets a Status too, never a bare page."""
    reasons = {400: "BadRequest", 413: "RequestEntityTooLarge", 414: "RequestURITooLong", 431: "BadRequest"}
    message = f"the request could not be parsed: {reason}"
    body = json.dumps(ApiError(status, reasons.get(status, "BadRequest"), message).status()).encode("utf-8")
    return [("Content-Type", "application/json"), ("Cache-Control", "no-cache, private")], body


class Endpoints:
    """One request: routed to discovery, OpenAPI, the resource verbs or a pod stream, and answered on `ex`."""

    def __init__(self, api: Api, ex: transport.Exchange) -> None:
        self.api = api
        self.ex = ex
        self.headers = ex.headers
        self.path = ex.request.target
        self.command = ex.request.method

    @classmethod
    def application(cls, api: Api) -> transport.Application:
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
        if segments[:1] and segments[0] in routing.HEALTH and method in ("GET", "HEAD"):
            self._send_text(200, "ok")
            return
        if not self.api.authorized(self.headers.get("Authorization")):
            self.ex.close_after()  # its body, if any, is left unread
            raise ApiError(401, "Unauthorized", "Unauthorized")
        if method not in routing.METHODS:
            self.ex.close_after()  # a body, if any, in a framing we do not know
            raise routing.method_not_allowed()
        body = self._read_body() if method in ("POST", "PUT", "PATCH", "DELETE") else b""
        access.set_requester(access.impersonated(access.ADMIN, self.headers))
        if not segments:
            if method != "GET":
                raise routing.method_not_allowed()
            self.send_json(200, {"paths": routing.ROOT_PATHS})
            return
        if segments[0] == "openapi":
            self._serve_openapi(method, segments)
            return
        found = routing.discovery_document(self.api.store.registry, self.api.address, segments)
        if found is not None:
            if method not in ("GET", "HEAD"):
                raise routing.method_not_allowed()
            self.send_json(200, found)
            return
        content_type = self.headers.get("Content-Type") or "application/json"
        req = routing.parse(self.api.store.registry, method, parts.path, parts.query, body, content_type)
        req.user_agent = self.headers.get("User-Agent") or ""
        self._serve_resource(req)

    def _serve_openapi(self, method: str, segments: list[str]) -> None:
        # /openapi/v2 and /openapi/v3[/<group version>], built and cached by kalab.lab.apiserver.openapi.
        if method not in ("GET", "HEAD"):
            raise routing.method_not_allowed()
        answer = openapi.respond(
            self.api.store,
            segments,
            urlsplit(self.path).query,
            self.headers.get("Accept") or "",
            self.headers.get("If-None-Match") or "",
        )
        if answer is None:
            raise routing.no_such_path()
        self.ex.respond(answer.status, list(answer.headers), answer.body)

    def _serve_resource(self, req: ApiRequest) -> None:
        api, method = self.api, req.method
        user = access.requester() or access.ADMIN
        if user != access.ADMIN:  # an impersonated user may do only what RBAC grants
            attrs = access.request_attributes(method, req.rt, req.namespace, req.name, req.sub, req.watch)
            access.check(api.store, user, attrs)
        if req.rt.kind == "Pod" and req.sub in ("log", "exec", "attach", "portforward", "proxy"):
            self._serve_pod_stream(req)
            return
        if req.sub == "proxy":
            raise routing.unavailable(f"the lab does not proxy to {req.rt.plural}")
        if req.body and protobuf.is_protobuf(req.content_type):
            # kubectl's generator commands (`kubectl create namespace|configmap|secret|deployment|role …`) send
            # protobuf: read it as the JSON it stands for, so every verb below sees one form.
            req.body = protobuf.body_as_json(req.body, req.rt.api_version, req.rt.kind if req.sub is None else "")
            req.content_type = "application/json"
        if req.body and not readable_body(req.content_type):
            raise ApiError(
                415,
                "UnsupportedMediaType",
                f"the body of the request was in an unknown format ({req.content_type}) - accepted media types "
                f"include: application/json, application/yaml, {protobuf.MEDIA_TYPE}, {', '.join(PATCH_TYPES)}",
            )
        if access.serves(req.rt):  # create-only reviews: answered, never stored
            if method != "POST" or req.name is not None or req.sub is not None:
                raise routing.method_not_allowed()
            self.send_json(201, access.review(api.store, req.rt, api.handlers.body_object(req), req.namespace, user))
            return
        handlers = api.handlers
        if method in ("GET", "HEAD"):
            output = negotiate(self.headers.get("Accept"))
            if req.watch:
                handlers.watch(self.ex, req, output)
            elif req.name is None:
                items, rv, token = handlers.list(req)
                self.send_json(200, render_list(req, output, items, rv, token))
            else:
                self.send_json(200, render_object(req, output, handlers.get(req)))
        elif method == "POST" and req.name is None:
            self.send_json(201, handlers.create(req))
        elif method == "PUT" and req.name is not None:
            self.send_json(200, handlers.update(req))
        elif method == "PATCH" and req.name is not None:
            code, obj = handlers.patch(req)
            self.send_json(code, obj)
        elif method == "DELETE" and req.sub is None:
            self.send_json(200, handlers.delete(req) if req.name is not None else handlers.delete_collection(req))
        else:
            raise routing.method_not_allowed()

    # -- pod streams -----------------------------------------------------------------------------------------

    def _serve_pod_stream(self, req: ApiRequest) -> None:
        assert req.name is not None and req.namespace is not None
        namespace, name, port = req.namespace, req.name, 0
        if req.sub == "proxy":
            name, port = routing.proxy_target(req.proxy_target)
        elif req.method not in (("GET",) if req.sub == "log" else ("GET", "POST")):
            raise routing.method_not_allowed()
        pod = self.api.store.get(req.rt, namespace, name)
        hooks = self.api.hooks
        if hooks is None:
            raise routing.unavailable("no kubelet is running in this lab, so pods cannot be reached")
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
                raise routing.unavailable("this lab's kubelet cannot attach to containers")
            request = ExecRequest(namespace, name, req.q("container"), (), req.flag("stdin"), req.flag("tty"))
            call = functools.partial(streams.serve_exec, self.ex, attaching, request)
        elif req.sub == "portforward":
            if not objects.spec(pod).get("nodeName"):
                raise bad_request(f"pod {name} does not have a host assigned")
            uid = objects.uid_of(pod)
            call = functools.partial(portforward.serve_port_forward, self.ex, hooks, namespace, name, uid)
        else:
            port = port or routing.default_port(pod, req.proxy_target)
            call = functools.partial(
                streams.serve_proxy, self.ex, hooks, namespace, name, port, req.proxy_path, req.method, req.body
            )
        self.ex.close_after()  # the stream owns the connection from here on
        call()
