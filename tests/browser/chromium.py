"""Debian's Chromium under Playwright: Playwright cannot download a browser of its own here."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import BrowserContext, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
# No sandbox: it needs privileges root does not get and a normal user may lack in a container. The rest keeps a
# headless browser on a machine without internet from calling out (refused, many at a time) at every start.
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


@contextmanager
def chromium(profile: Path, width: int = 1280, height: int = 900) -> Iterator[BrowserContext]:
    """One headless Chromium on a fresh, empty profile directory; closed afterwards."""
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(CHROMIUM),
            headless=True,
            args=FLAGS,
            viewport={"width": width, "height": height},
        )
        try:
            yield context
        finally:
            context.close()
