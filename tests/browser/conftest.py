"""One JupyterLab (`make serve-lab`, as `make lab` serves it), one embedded lab and one Chromium for the session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.browser.chromium import chromium
from tests.browser.jupyterlab import LAB, LabServer, served_lab
from tests.browser.notebook_page import NotebookPage
from tests.support.kalabcli import run_kalab


@pytest.fixture(scope="session")
def lab_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    try:
        with served_lab(tmp_path_factory.mktemp("jupyterlab"), LAB) as server:
            yield server
    finally:
        down = run_kalab("lab", "down", "--name", LAB)
        assert down.returncode == 0, down.stderr


@pytest.fixture(scope="session")
def notebook_page(lab_server: LabServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NotebookPage]:
    with chromium(tmp_path_factory.mktemp("chromium-profile")) as context:
        yield NotebookPage(context.new_page(), lab_server)
