"""Who is asking and what they may do: the lab's one user, impersonation, RBAC, and the access reviews.

The lab's kubeconfig holds one bearer token, the cluster admin's: `system:admin` in group `system:masters`, as the
installer's kubeconfig is on OpenShift. The admin may impersonate anyone (`kubectl --as=…`, `Impersonate-User`
and `Impersonate-Group` headers); the request then acts as that user, whose rights come from the RBAC objects the
lab stores (RoleBindings and ClusterRoleBindings to Roles and ClusterRoles), what kube-apiserver's bootstrap policy
gives every authenticated user (the self reviews and discovery), and, for the verb `use` on an SCC, being named in
the SCC's `users` or `groups` (what `oc adm policy add-scc-to-user` writes on older OpenShift 4.x).

The reviews are create-only and never stored, answered as kube-apiserver answers them: SelfSubjectAccessReview
(`kubectl auth can-i`), SelfSubjectRulesReview (`kubectl auth can-i --list`), SubjectAccessReview and
LocalSubjectAccessReview (an admin asking about someone else), and SelfSubjectReview (`kubectl auth whoami`).

Who sends the current request travels in a context variable set by the API server for its handler thread, so
admission (the SCC check) sees it; writes the lab's controllers make directly on the store have no requester.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from kalab.lab.apiserver.errors import ApiError, bad_request, forbidden, invalid
from kalab.lab.apiserver.resources import ResourceType
from kalab.lab.apiserver.store import Obj, Store
from kalab.model import objects

MASTERS: Final = "system:masters"
AUTHENTICATED: Final = "system:authenticated"
SA_PREFIX: Final = "system:serviceaccount:"
RBAC: Final = "rbac.authorization.k8s.io"
SCC_GROUP: Final = "security.openshift.io"
SCC_RESOURCE: Final = "securitycontextconstraints"
REVIEW_KEYS: Final = frozenset({
    "authorization.k8s.io/selfsubjectaccessreviews", "authorization.k8s.io/selfsubjectrulesreviews",
    "authorization.k8s.io/subjectaccessreviews", "authorization.k8s.io/localsubjectaccessreviews",
    "authentication.k8s.io/selfsubjectreviews",
})  # fmt: skip


@dataclass(frozen=True)
class UserInfo:
    username: str
    groups: tuple[str, ...] = ()
    uid: str = ""
    extra: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def as_json(self) -> Obj:
        doc: Obj = {"username": self.username, "groups": list(self.groups)}
        if self.uid:
            doc["uid"] = self.uid
        if self.extra:
            doc["extra"] = {k: list(v) for k, v in self.extra.items()}
        return doc


ADMIN: Final = UserInfo("system:admin", (MASTERS, AUTHENTICATED))


def service_account_user(namespace: str, name: str) -> UserInfo:
    """A service account as the authenticator makes it: its user name and the groups that implies."""
    groups = ("system:serviceaccounts", f"system:serviceaccounts:{namespace}", AUTHENTICATED)
    return UserInfo(f"{SA_PREFIX}{namespace}:{name}", groups)


# -- who is asking --------------------------------------------------------------------------------------------------

_requester: ContextVar[UserInfo | None] = ContextVar("kalab_requester", default=None)


def requester() -> UserInfo | None:
    """The user of the API request being served on this thread; None for the lab's own (controller) writes."""
    return _requester.get()


def set_requester(user: UserInfo | None) -> None:
    """Set by the API server once a request is authenticated (each connection has its own thread)."""
    _requester.set(user)


class Headers(Protocol):
    def get(self, name: str) -> str | None: ...
    def get_all(self, name: str) -> list[str] | None: ...


def impersonated(user: UserInfo, headers: Headers) -> UserInfo:
    """`user`, or whom its Impersonate-* headers name (the admin may impersonate anyone; others nobody)."""
    name = (headers.get("Impersonate-User") or "").strip()
    groups = [g.strip() for g in headers.get_all("Impersonate-Group") or [] if g.strip()]
    uid = (headers.get("Impersonate-Uid") or "").strip()
    extra_headers = [h for h in _header_names(headers) if h.lower().startswith("impersonate-extra-")]
    if not name:
        if groups or uid or extra_headers:
            raise bad_request("requested impersonation of groups, uid or extra without impersonating a user")
        return user
    if MASTERS not in user.groups:
        raise forbidden(
            f'users "{name}" is forbidden: User "{user.username}" cannot impersonate resource "users" '
            'in API group "" at the cluster scope'
        )
    extra: dict[str, tuple[str, ...]] = {}
    for header in extra_headers:
        extra[header[len("impersonate-extra-") :].lower()] = tuple(headers.get_all(header) or [])
    if name.startswith(SA_PREFIX) and not groups:
        namespace, _, sa = name[len(SA_PREFIX) :].partition(":")
        return UserInfo(name, service_account_user(namespace, sa).groups, uid, extra)
    if name != "system:anonymous" and AUTHENTICATED not in groups:
        groups.append(AUTHENTICATED)  # the authenticator adds it to every authenticated user
    return UserInfo(name, tuple(groups), uid, extra)


def _header_names(headers: Headers) -> list[str]:
    keys = getattr(headers, "keys", None)
    return [str(k) for k in keys()] if callable(keys) else []


# -- RBAC -----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Attributes:
    """What a request does, as the authorizer sees it (resource attributes, or a non-resource path)."""

    verb: str
    group: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""
    namespace: str = ""
    path: str = ""  # set for non-resource requests (/version, /healthz …)

    @property
    def is_resource(self) -> bool:
        return not self.path


@dataclass(frozen=True)
class Answer:
    allowed: bool
    reason: str = ""


@dataclass(frozen=True)
class _Grant:
    rules: tuple[Mapping[str, Any], ...]
    source: str  # `ClusterRoleBinding "x" of ClusterRole "y" to Group "z"`


# What kube-apiserver's bootstrap policy (system:basic-user, system:discovery, system:public-info-viewer) gives
# every authenticated user: its own reviews and the discovery paths.
_BASIC_RULES: Final[tuple[Mapping[str, Any], ...]] = (
    {"apiGroups": ["authorization.k8s.io"], "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
     "verbs": ["create"]},
    {"apiGroups": ["authentication.k8s.io"], "resources": ["selfsubjectreviews"], "verbs": ["create"]},
    {"nonResourceURLs": ["/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi", "/openapi/*",
                         "/readyz", "/version", "/version/"], "verbs": ["get"]},
)  # fmt: skip
_BASIC_SOURCES: Final = (
    'ClusterRoleBinding "system:basic-user" of ClusterRole "system:basic-user" to Group "system:authenticated"'
)
_MASTER_RULES: Final[tuple[Mapping[str, Any], ...]] = (
    {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
    {"nonResourceURLs": ["*"], "verbs": ["*"]},
)


def _describe_subject(subject: Mapping[str, Any], binding_ns: str) -> str:
    kind, name = subject.get("kind"), str(subject.get("name") or "")
    if kind == "ServiceAccount":
        return f'ServiceAccount "{subject.get("namespace") or binding_ns}/{name}"'
    return f'{kind} "{name}"'


def _subject_matches(subject: Mapping[str, Any], user: UserInfo, binding_ns: str) -> bool:
    kind, name = subject.get("kind"), subject.get("name")
    if kind == "ServiceAccount":
        return user.username == f"{SA_PREFIX}{subject.get('namespace') or binding_ns}:{name}"
    if kind == "User":
        return name == user.username
    if kind == "Group":
        return name in user.groups
    return False


def _grants(store: Store, user: UserInfo, namespace: str) -> Iterator[_Grant]:
    """Every role bound to `user` that applies in `namespace` ("" for cluster scope), cluster bindings first."""
    registry = store.registry
    cluster_bindings, _ = store.list(registry.by_key(f"{RBAC}/clusterrolebindings"))
    role_bindings = store.list(registry.by_key(f"{RBAC}/rolebindings"), namespace)[0] if namespace else []
    for binding in [*cluster_bindings, *role_bindings]:
        binding_ns = objects.namespace_of(binding)
        subject = next((s for s in binding.get("subjects") or [] if _subject_matches(s, user, binding_ns)), None)
        if subject is None:
            continue
        ref = binding.get("roleRef") or {}
        role_kind, role_name = str(ref.get("kind") or ""), str(ref.get("name") or "")
        if role_kind == "Role" and binding_ns:
            role = store.try_get(registry.by_key(f"{RBAC}/roles"), binding_ns, role_name)
        else:
            role = store.try_get(registry.by_key(f"{RBAC}/clusterroles"), None, role_name)
        if role is None:
            continue
        what = (
            f'RoleBinding "{objects.name_of(binding)}/{binding_ns}"'
            if binding_ns
            else f'ClusterRoleBinding "{objects.name_of(binding)}"'
        )
        source = f'{what} of {role_kind} "{role_name}" to {_describe_subject(subject, binding_ns)}'
        yield _Grant(tuple(role.get("rules") or []), source)


def granted_rules(store: Store, user: UserInfo, namespace: str) -> list[Mapping[str, Any]]:
    """The RBAC rules bound to `user` that count in `namespace` (bindings there and cluster-wide)."""
    return [rule for grant in _grants(store, user, namespace) for rule in grant.rules]


def _resource_matches(rule_resource: str, resource: str, subresource: str) -> bool:
    combined = f"{resource}/{subresource}" if subresource else resource
    if rule_resource in ("*", combined):
        return True
    return bool(subresource) and rule_resource == f"*/{subresource}"


def _path_matches(rule_path: str, path: str) -> bool:
    if rule_path == "*" or rule_path == path:
        return True
    return rule_path.endswith("*") and path.startswith(rule_path[:-1])


def rule_allows(rule: Mapping[str, Any], attrs: Attributes) -> bool:
    """One PolicyRule against request attributes, with RBAC's wildcards."""
    verbs = rule.get("verbs") or []
    if "*" not in verbs and attrs.verb not in verbs:
        return False
    if not attrs.is_resource:
        return any(_path_matches(str(p), attrs.path) for p in rule.get("nonResourceURLs") or [])
    groups, names = rule.get("apiGroups") or [], rule.get("resourceNames") or []
    return (
        ("*" in groups or attrs.group in groups)
        and any(_resource_matches(str(r), attrs.resource, attrs.subresource) for r in rule.get("resources") or [])
        and (not names or attrs.name in names)
    )


def _scc_lists_user(store: Store, user: UserInfo, attrs: Attributes) -> str | None:
    """The SCC that names `user` (or one of its groups) for `use`, when that is what is asked."""
    if attrs.verb != "use" or attrs.group != SCC_GROUP or attrs.resource != SCC_RESOURCE or not attrs.name:
        return None
    scc = store.try_get(store.registry.by_key(f"{SCC_GROUP}/{SCC_RESOURCE}"), None, attrs.name)
    if scc is None:
        return None
    if user.username in (scc.get("users") or []) or set(user.groups) & set(scc.get("groups") or []):
        return attrs.name
    return None


def authorize(store: Store, user: UserInfo, attrs: Attributes) -> Answer:
    """kube-apiserver's answer: the privileged group first, then RBAC (with the bootstrap policy)."""
    if MASTERS in user.groups:
        return Answer(True)
    for grant in _grants(store, user, attrs.namespace):
        if any(rule_allows(rule, attrs) for rule in grant.rules):
            return Answer(True, f"RBAC: allowed by {grant.source}")
    if AUTHENTICATED in user.groups and any(rule_allows(rule, attrs) for rule in _BASIC_RULES):
        return Answer(True, f"RBAC: allowed by {_BASIC_SOURCES}")
    scc = _scc_lists_user(store, user, attrs)
    if scc is not None:
        return Answer(True, f'allowed by SecurityContextConstraints "{scc}", which lists the user or its group')
    return Answer(False)


def rules_for(store: Store, user: UserInfo, namespace: str) -> tuple[list[Obj], list[Obj]]:
    """(resourceRules, nonResourceRules) as SelfSubjectRulesReview lists them for `namespace`."""
    rules: list[Mapping[str, Any]] = []
    if MASTERS in user.groups:
        rules += _MASTER_RULES
    rules += granted_rules(store, user, namespace)
    if AUTHENTICATED in user.groups:
        rules += _BASIC_RULES
    resource_rules: list[Obj] = []
    non_resource: list[Obj] = []
    for rule in rules:
        if rule.get("nonResourceURLs"):
            non_resource.append(
                {"verbs": list(rule.get("verbs") or []), "nonResourceURLs": list(rule["nonResourceURLs"])}
            )
            continue
        entry: Obj = {
            "verbs": list(rule.get("verbs") or []),
            "apiGroups": list(rule.get("apiGroups") or []),
            "resources": list(rule.get("resources") or []),
        }
        if rule.get("resourceNames"):
            entry["resourceNames"] = list(rule["resourceNames"])
        resource_rules.append(entry)
    resource_rules += _scc_rules(store, user)
    return resource_rules, non_resource


def _scc_rules(store: Store, user: UserInfo) -> list[Obj]:
    sccs, _ = store.list(store.registry.by_key(f"{SCC_GROUP}/{SCC_RESOURCE}"))
    names = [
        objects.name_of(s)
        for s in sccs
        if user.username in (s.get("users") or []) or set(user.groups) & set(s.get("groups") or [])
    ]
    if not names or MASTERS in user.groups:
        return []
    return [{"verbs": ["use"], "apiGroups": [SCC_GROUP], "resources": [SCC_RESOURCE], "resourceNames": names}]


# -- the reviews ----------------------------------------------------------------------------------------------------


def serves(rt: ResourceType) -> bool:
    """True for the create-only review resources this module answers."""
    return rt.key in REVIEW_KEYS


def _attributes(spec: Mapping[str, Any], kind: str, default_namespace: str = "") -> Attributes:
    resource, non_resource = spec.get("resourceAttributes"), spec.get("nonResourceAttributes")
    if bool(resource) == bool(non_resource):
        raise invalid(
            kind,
            "",
            "spec.resourceAttributes: Invalid value: exactly one of nonResourceAttributes or "
            "resourceAttributes must be specified",
        )
    if non_resource:
        return Attributes(verb=str(non_resource.get("verb") or ""), path=str(non_resource.get("path") or ""))
    assert isinstance(resource, Mapping)
    return Attributes(
        verb=str(resource.get("verb") or ""),
        group=str(resource.get("group") or ""),
        resource=str(resource.get("resource") or ""),
        subresource=str(resource.get("subresource") or ""),
        name=str(resource.get("name") or ""),
        namespace=str(resource.get("namespace") or default_namespace),
    )


def _answered(body: Obj, rt: ResourceType, status: Obj) -> Obj:
    doc = copy.deepcopy(body)
    doc["apiVersion"], doc["kind"] = rt.api_version, rt.kind
    meta = doc.setdefault("metadata", {})
    meta.setdefault("creationTimestamp", None)
    doc["status"] = status
    return doc


def _access_status(answer: Answer) -> Obj:
    status: Obj = {"allowed": answer.allowed}
    if answer.reason:
        status["reason"] = answer.reason
    return status


def _spec_user(spec: Mapping[str, Any]) -> UserInfo:
    user, groups = str(spec.get("user") or ""), [str(g) for g in spec.get("groups") or []]
    if not user and not groups:
        raise invalid(
            "SubjectAccessReview", "", 'spec.user: Invalid value: "": at least one of user or group must be specified'
        )
    extra = {str(k): tuple(str(v) for v in vs or []) for k, vs in (spec.get("extra") or {}).items()}
    return UserInfo(user, tuple(groups), str(spec.get("uid") or ""), extra)


def review(store: Store, rt: ResourceType, body: Obj, namespace: str | None, user: UserInfo) -> Obj:
    """Answer a review created at `rt` (in `namespace` for LocalSubjectAccessReview) on behalf of `user`."""
    spec = body.get("spec") or {}  # read raw: a spec that is no object is refused, not read as empty
    if not isinstance(spec, dict):
        raise bad_request("spec must be an object")
    if rt.kind == "SelfSubjectReview":
        return _answered(body, rt, {"userInfo": user.as_json()})
    if rt.kind == "SelfSubjectRulesReview":
        ns = str(spec.get("namespace") or "")
        resource_rules, non_resource = rules_for(store, user, ns)
        return _answered(
            body, rt, {"resourceRules": resource_rules, "nonResourceRules": non_resource, "incomplete": False}
        )
    if rt.kind == "SelfSubjectAccessReview":
        return _answered(body, rt, _access_status(authorize(store, user, _attributes(spec, rt.kind))))
    _require(user, store, rt)
    subject = _spec_user(spec)
    if rt.kind == "LocalSubjectAccessReview":
        attrs = _attributes(spec, rt.kind, namespace or "")
        if not attrs.is_resource:
            raise invalid(rt.kind, "", "spec.nonResourceAttributes: Invalid value: disallowed on this kind of request")
        if attrs.namespace != namespace:
            raise invalid(
                rt.kind,
                "",
                f'spec.resourceAttributes.namespace: Invalid value: "{attrs.namespace}": must match metadata.namespace',
            )
        body.setdefault("metadata", {})["namespace"] = namespace
    else:
        attrs = _attributes(spec, rt.kind)
    return _answered(body, rt, _access_status(authorize(store, subject, attrs)))


def _require(user: UserInfo, store: Store, rt: ResourceType) -> None:
    """Asking about others needs `create` on the review itself (cluster admins have it)."""
    attrs = Attributes("create", rt.group, rt.plural)
    if not authorize(store, user, attrs).allowed:
        raise forbidden(
            f'{rt.plural}.{rt.group} is forbidden: User "{user.username}" cannot create resource '
            f'"{rt.plural}" in API group "{rt.group}" at the cluster scope'
        )


# -- requests as attributes -----------------------------------------------------------------------------------------


def request_attributes(
    method: str, rt: ResourceType, namespace: str | None, name: str | None, sub: str | None, watch: bool
) -> Attributes:
    """The authorizer's view of one REST request (kube-apiserver's RequestInfo verbs)."""
    if method in ("GET", "HEAD"):
        verb = "watch" if watch else ("get" if name else "list")
    else:
        verb = {"POST": "create", "PUT": "update", "PATCH": "patch"}.get(method, "")
        if method == "DELETE":
            verb = "delete" if name else "deletecollection"
    return Attributes(verb or method.lower(), rt.group, rt.plural, sub or "", name or "", namespace or "")


def refusal(user: UserInfo, attrs: Attributes) -> ApiError:
    """kube-apiserver's 403 for a request RBAC does not allow."""
    resource = f"{attrs.resource}/{attrs.subresource}" if attrs.subresource else attrs.resource
    qualified = f"{attrs.resource}.{attrs.group}" if attrs.group else attrs.resource
    target = f'{qualified} "{attrs.name}"' if attrs.name else qualified
    scope = f'in the namespace "{attrs.namespace}"' if attrs.namespace else "at the cluster scope"
    return ApiError(
        403,
        "Forbidden",
        f'{target} is forbidden: User "{user.username}" cannot {attrs.verb} resource "{resource}" in API group '
        f'"{attrs.group}" {scope}',
        {"name": attrs.name, "group": attrs.group, "kind": attrs.resource}
        if attrs.name
        else {"group": attrs.group, "kind": attrs.resource},
    )


def check(store: Store, user: UserInfo, attrs: Attributes) -> None:
    """Raise kube-apiserver's 403 unless `user` may do `attrs`."""
    if not authorize(store, user, attrs).allowed:
        raise refusal(user, attrs)
