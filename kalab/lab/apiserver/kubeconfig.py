"""The kubeconfig a user (or kubectl, or the `kubernetes` client) points at the lab's API server.

The CA goes inline (`certificate-authority-data`) so the file is self-contained; it holds the bearer token, hence
mode 0600 like any credential.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import yaml

from kalab.lab.apiserver.tls import write_private

CLUSTER = "kalab"
USER = "kalab-admin"
CONTEXT = "kalab"


def kubeconfig_dict(
    server_url: str,
    token: str,
    ca_pem: bytes,
    namespace: str = "default",
    extensions: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """`extensions` go on the cluster entry (a kubeconfig's named extensions, as minikube writes them)."""
    cluster: dict[str, Any] = {
        "server": server_url,
        "certificate-authority-data": base64.b64encode(ca_pem).decode("ascii"),
    }
    if extensions:
        cluster["extensions"] = [{"name": name, "extension": ext} for name, ext in extensions.items()]
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "clusters": [{"name": CLUSTER, "cluster": cluster}],
        "users": [{"name": USER, "user": {"token": token}}],
        "contexts": [{"name": CONTEXT, "context": {"cluster": CLUSTER, "user": USER, "namespace": namespace}}],
        "current-context": CONTEXT,
    }


def write_kubeconfig(
    path: Path,
    server_url: str,
    token: str,
    ca_pem: bytes,
    namespace: str = "default",
    extensions: dict[str, dict[str, Any]] | None = None,
) -> Path:
    """Write the kubeconfig to `path` with mode 0600 (atomically) and return the path."""
    text = yaml.safe_dump(kubeconfig_dict(server_url, token, ca_pem, namespace, extensions), sort_keys=False)
    return write_private(path, text.encode("utf-8"))
