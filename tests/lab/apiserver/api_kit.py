"""For API server tests: a seeded store, a served lab API, and ways to talk to it (official client, raw HTTPS, kubectl).

Plain helpers rather than a conftest, so this directory's other test modules keep their own fixtures.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from kubernetes import client, config

from kalab.lab.apiserver.hooks import PodHooks
from kalab.lab.apiserver.resources import Registry
from kalab.lab.apiserver.server import RunningServer, serve
from kalab.lab.apiserver.store import Store
from tests.support.waiting import wait_for as wait_for  # re-exported: the tests import it from here

T = TypeVar("T")
KUBECTL = shutil.which("kubectl", path=str(Path(sys.executable).parent)) or shutil.which("kubectl")


def seeded_store() -> Store:
    """Namespaces default and demo, three nodes like the seed's, and the cluster network config."""
    store = Store(Registry())
    rt = store.registry.by_key
    for name in ("default", "demo"):
        store.create(rt("/namespaces"), {"metadata": {"name": name}, "status": {"phase": "Active"}})
    for index, name in enumerate(("master-0", "master-1", "master-2")):
        store.create(
            rt("/nodes"),
            {
                "metadata": {
                    "name": name,
                    "labels": {"kubernetes.io/hostname": name, "node-role.kubernetes.io/master": ""},
                },
                "status": {
                    "conditions": [{"type": "Ready", "status": "True"}],
                    "addresses": [{"type": "InternalIP", "address": f"192.168.7.{13 + index}"}],
                    # Every field: the official client refuses a NodeSystemInfo missing any of them.
                    "nodeInfo": {
                        "kubeletVersion": "v1.30.4",
                        "osImage": "kalab",
                        "kernelVersion": "6.1",
                        "containerRuntimeVersion": "kalab://1",
                        "architecture": "amd64",
                        "bootID": "b",
                        "kubeProxyVersion": "v1.30.4",
                        "machineID": "m",
                        "operatingSystem": "linux",
                        "systemUUID": "u",
                    },
                },
            },
        )
    store.create(
        rt("config.openshift.io/networks"),
        {
            "metadata": {"name": "cluster"},
            "spec": {
                "clusterNetwork": [{"cidr": "10.254.0.0/16", "hostPrefix": 24}],
                "networkType": "OpenShiftSDN",
                "serviceNetwork": ["172.30.0.0/16"],
            },
        },
    )
    return store


@contextlib.contextmanager
def running_server(
    store: Store, state_dir: Path, hooks: PodHooks | None = None, **options: Any
) -> Iterator[RunningServer]:
    """serve() for the length of a with-block; always shut down, so no test leaves a server behind."""
    options.setdefault("namespace_grace", 0.3)
    running = serve(store, hooks, state_dir, **options)
    try:
        yield running
    finally:
        running.shutdown()


@contextlib.contextmanager
def official_client(server: RunningServer) -> Iterator[client.ApiClient]:
    """The `kubernetes` client configured only from the kubeconfig the server wrote."""
    api_client = config.new_client_from_config(config_file=str(server.kubeconfig))
    try:
        yield api_client
    finally:
        api_client.close()


@dataclass
class Raw:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def raw_request(
    server: RunningServer,
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    token: str | None = "",
    timeout: float = 10.0,
) -> Raw:
    """One HTTPS request verified against the lab CA; token "" means the server's, None means none at all."""
    context = ssl.create_default_context(cafile=str(server.ca_file))
    conn = http.client.HTTPSConnection(server.host, server.port, context=context, timeout=timeout)
    sent = dict(headers or {})
    if token is not None:
        sent["Authorization"] = f"Bearer {token or server.token}"
    try:
        conn.request(method, path, body=body, headers=sent)
        response = conn.getresponse()
        return Raw(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        conn.close()


@dataclass
class Kubectl:
    server: RunningServer
    home: Path

    def command(self, *args: str) -> list[str]:
        assert KUBECTL is not None
        return [KUBECTL, "--cache-dir", str(self.home / "cache"), *args]

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("KUBE")}
        env.update(KUBECONFIG=str(self.server.kubeconfig), HOME=str(self.home))
        return env

    def __call__(self, *args: str, check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            self.command(*args),
            env=self.env(),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if check:
            assert done.returncode == 0, f"kubectl {' '.join(args)} failed: {done.stderr}"
            # Discovery, OpenAPI or protocol trouble shows up as warnings on stderr: there must be none.
            assert done.stderr == "", f"kubectl {' '.join(args)} warned: {done.stderr}"
        return done


def make_kubectl(server: RunningServer, home: Path) -> Kubectl:
    """kubectl against `server`, with its own HOME and cache; skipped where kubectl is absent (but never in CI)."""
    if KUBECTL is None:
        if os.environ.get("CI"):
            pytest.fail("kubectl is missing: `make test` installs it with the dev dependencies")
        pytest.skip("kubectl is not installed (make test installs it)")
    home.mkdir(parents=True, exist_ok=True)
    return Kubectl(server, home)
