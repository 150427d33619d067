"""Connecting to a cluster from a kubeconfig: the lab's (`kalab lab up` writes one) or any real cluster's."""

from __future__ import annotations

import os
import shutil
import tempfile
import weakref
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException
from kubernetes.dynamic import DynamicClient
from urllib3.exceptions import HTTPError

from kalab.cluster._common import api_message
from kalab.model.errors import KalabError
from kalab.model.textfile import parse_yaml_all, read_text
from kalab.model.wording import shorten

CONNECT_TIMEOUT = 10.0


@dataclass(frozen=True)
class Cluster:
    """One API connection and typed views of it; every verb in kalab.cluster takes one of these."""

    api: client.ApiClient = field(repr=False)
    server: str
    context: str | None
    kubeconfig: Path | None = None

    @cached_property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api)

    @cached_property
    def apps(self) -> client.AppsV1Api:
        return client.AppsV1Api(self.api)

    @cached_property
    def rbac(self) -> client.RbacAuthorizationV1Api:
        return client.RbacAuthorizationV1Api(self.api)

    @cached_property
    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.api)

    @cached_property
    def dynamic(self) -> DynamicClient:
        # The client caches discovery in a file, by default /tmp/osrcp-<hash>.json per server, kept forever; keep
        # this connection's in a directory of its own that goes when the connection does.
        folder = tempfile.mkdtemp(prefix="kalab-discovery-")
        weakref.finalize(self, shutil.rmtree, folder, True)
        return DynamicClient(self.api, cache_file=os.path.join(folder, "discovery.json"))  # type: ignore[no-untyped-call]

    def api_groups(self) -> set[str]:
        """The API groups the server serves (discovery)."""
        groups = client.ApisApi(self.api).get_api_versions().groups or []
        return {g.name for g in groups}

    def is_openshift(self) -> bool:
        """True when the server serves OpenShift's config.openshift.io group (networks, …)."""
        return "config.openshift.io" in self.api_groups()


def _kubeconfig_path(kubeconfig: str | os.PathLike[str] | None) -> Path:
    if kubeconfig is not None:
        return Path(kubeconfig).expanduser()
    env = os.environ.get("KUBECONFIG", "").split(os.pathsep)[0]
    return Path(env).expanduser() if env else Path.home() / ".kube" / "config"


def _context_names(path: Path) -> set[str]:
    """The names of the kubeconfig's contexts, after checking the file is a readable YAML map with a list of them."""
    what, hint = "The kubeconfig", "pass the kubeconfig `kalab lab up` printed, or your cluster's"
    docs = parse_yaml_all(read_text(path, what, hint), what, path, hint)
    if len(docs) != 1 or not isinstance(docs[0], dict):
        raise KalabError(
            f"The kubeconfig {shorten(path)} is not a kubeconfig (a YAML map of clusters, contexts, users); {hint}."
        )
    contexts = docs[0].get("contexts") or []
    if not isinstance(contexts, list) or not all(isinstance(c, dict) for c in contexts):
        raise KalabError(f"The kubeconfig {shorten(path)} has a contexts field that is not a list of contexts; {hint}.")
    return {str(c.get("name")) for c in contexts if c.get("name") is not None}


def connect(
    kubeconfig: str | os.PathLike[str] | None = None, context: str | None = None, timeout: float = CONNECT_TIMEOUT
) -> Cluster:
    """Load `kubeconfig` (default: $KUBECONFIG, then ~/.kube/config), pick `context`, and check the server answers."""
    path = _kubeconfig_path(kubeconfig)
    if not os.path.lexists(path):
        raise KalabError(
            f"No kubeconfig at {shorten(path)}; start the lab with `kalab lab up` and pass the kubeconfig it "
            "prints, or pass the kubeconfig of your cluster."
        )
    names = _context_names(path)
    if context is not None and context not in names:
        listed = ", ".join(shorten(n, 40) for n in sorted(names)) or "none"
        raise KalabError(
            f'The kubeconfig {shorten(path)} has no context "{shorten(context, 40)}"; pick one of: {listed}.'
        )
    cfg = client.Configuration()
    try:
        _, active = config.list_kube_config_contexts(config_file=str(path))  # type: ignore[no-untyped-call]
        chosen = context or (active or {}).get("name")
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=str(path), context=context, client_configuration=cfg, persist_config=False
        )
    except (ConfigException, TypeError, AttributeError, KeyError, ValueError, yaml.YAMLError) as err:
        # The client's loader reads whatever a file holds and fails on odd shapes with Python's own errors.
        reason = shorten(err, 120) if isinstance(err, ConfigException) else f"{type(err).__name__}: {shorten(err, 80)}"
        raise KalabError(
            f"The kubeconfig {shorten(path)} cannot be used ({reason}); fix it or pass another one."
        ) from None
    cfg.retries = 1
    api = client.ApiClient(cfg)
    server = str(cfg.host)
    try:
        # Discovery needs an authenticated user (unlike /version), so a bad token shows here.
        client.ApisApi(api).get_api_versions(_request_timeout=timeout)
    except ApiException as err:
        api.close()  # type: ignore[no-untyped-call]
        if err.status in (401, 403):
            raise KalabError(
                f"The server {server} refused the kubeconfig's credentials ({err.status}); log in again "
                "(`oc login`) or, for the lab, use the kubeconfig `kalab lab status` shows."
            ) from None
        raise KalabError(
            f"The server {server} answered with an error ({api_message(err)}); check the kubeconfig's server URL."
        ) from None
    except (HTTPError, OSError):
        api.close()  # type: ignore[no-untyped-call]
        raise KalabError(
            f"Cannot reach the API server at {server}; start the lab with `kalab lab up` or pass the kubeconfig "
            "of a running cluster."
        ) from None
    return Cluster(api=api, server=server, context=chosen, kubeconfig=path)
