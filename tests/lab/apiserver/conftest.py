"""A fresh seeded store and an API server over it, and kubectl and the official client pointed at it, for every
API-server test that asks for them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from kalab.lab.apiserver.server import RunningServer
from kalab.lab.apiserver.store import Store
from tests.lab.apiserver.api_kit import Kubectl, make_kubectl, official_client, running_server, seeded_store


@pytest.fixture
def lab_store() -> Store:
    return seeded_store()


@pytest.fixture
def server(lab_store: Store, tmp_path: Path) -> Iterator[RunningServer]:
    with running_server(lab_store, tmp_path / "state") as running:
        yield running


@pytest.fixture
def kubectl(server: RunningServer, tmp_path: Path) -> Kubectl:
    return make_kubectl(server, tmp_path / "home")


@pytest.fixture
def api(server: RunningServer) -> Iterator[client.ApiClient]:
    with official_client(server) as api_client:
        yield api_client
