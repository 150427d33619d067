"""A notebook in JupyterLab as a person sees it: open it, Run All, save, and read what the page rendered.

Only JupyterLab's own DOM is read (prompts, output areas, the kernel indicator), never a notebook's content, so the
same helpers judge any notebook: what a test asserts about the runbook stays generic.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from playwright.sync_api import Page

from tests.browser.jupyterlab import LabServer
from tests.support.waiting import wait_for

WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
_NUMBERED = re.compile(r"^\[\d+\]:$")
PASS, FAIL = "✅", "❌"
# A check line runs from its mark to the next mark or the end of its output (an HTML list has no line breaks in
# textContent).
_CHECK = re.compile(f"[{PASS}{FAIL}][^{PASS}{FAIL}\n]*")

# What the page shows of the visible notebook, read in one go so that a wait and its assertions see the same state.
# textContent, not innerText: cells scrolled out of view are not laid out (content-visibility), and innerText of
# those is empty.
_SNAPSHOT_JS = """
() => {
  const panel = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');
  if (!panel) return null;
  const cells = [...panel.querySelectorAll('.jp-Cell.jp-CodeCell')];
  return {
    kernel: panel.querySelector('.jp-Notebook-ExecutionIndicator')?.dataset.status ?? '',
    dialog: document.querySelector('.jp-Dialog')?.innerText ?? '',
    cells: cells.map(cell => ({
      prompt: (cell.querySelector('.jp-InputArea-prompt')?.textContent ?? '').trim(),
      outputs: [...cell.querySelectorAll('.jp-OutputArea-output')].map(o => ({
        mime: o.dataset.mimeType ?? '',
        text: o.textContent,
        // ipywidgets' renderer sets no data-mime-type; its node says "Loading widget...", becomes .jupyter-widgets
        // with "Error displaying widget: ..." on failure, or holds the widget's view (.widget-select, .widget-vbox …).
        widget_output: o.matches('.jupyter-widgets') || !!o.querySelector('.jupyter-widgets')
          || o.textContent.trim() === 'Loading widget...',
        widget: !!o.querySelector('[class*="widget-"]'),
        images: [...o.querySelectorAll('img')].map(i => i.complete ? i.naturalWidth : -1),
      })),
    })),
  };
}
"""


@dataclass(frozen=True)
class Output:
    mime: str  # JupyterLab's data-mime-type: the representation it chose to render ("" for a widget)
    text: str
    widget_output: bool  # an ipywidgets output, drawn or not
    widget: bool  # a widget view is in the DOM (not "Loading widget..." nor "Error displaying widget: ...")
    images: tuple[int, ...]  # each <img>'s natural width: 0 failed to load, -1 still loading

    @property
    def traceback(self) -> bool:
        return "Traceback (most recent call last)" in self.text


@dataclass(frozen=True)
class Cell:
    prompt: str  # "[3]:" once run, "[*]:" queued or running, "[ ]:" never run
    outputs: tuple[Output, ...]

    @property
    def executed(self) -> bool:
        return bool(_NUMBERED.match(self.prompt))

    @property
    def queued(self) -> bool:
        return self.prompt == "[*]:"


@dataclass(frozen=True)
class Snapshot:
    kernel: str
    dialog: str
    cells: tuple[Cell, ...] = field(default_factory=tuple)

    @property
    def outputs(self) -> list[Output]:
        return [o for c in self.cells for o in c.outputs]

    @property
    def text(self) -> str:
        return "\n".join(o.text for o in self.outputs)

    @property
    def tracebacks(self) -> list[str]:
        return [o.text for o in self.outputs if o.traceback]

    @property
    def checks(self) -> list[str]:
        """Every ✅/❌ line on the page, mark first, with the sentence (and for ❌ the hint) after it."""
        return [line.strip() for o in self.outputs for line in _CHECK.findall(o.text)]

    @property
    def failed_checks(self) -> list[str]:
        return [line for line in self.checks if line.startswith(FAIL)]

    @property
    def widget_outputs(self) -> list[Output]:
        return [o for o in self.outputs if o.widget_output]

    @property
    def images(self) -> list[int]:
        return [width for o in self.outputs for width in o.images]

    @property
    def rendering(self) -> bool:
        """Something is still on its way: a widget view, an image, or a queued cell."""
        return (
            any(c.queued for c in self.cells)
            or any(o.widget_output and o.text.strip() == "Loading widget..." for o in self.outputs)
            or -1 in self.images
        )

    @property
    def finished(self) -> bool:
        """Run All is over: the kernel is idle and nothing is queued (cells left unrun mean one stopped the run).

        Run All queues every cell at once, so before it starts no cell has run, and once the kernel reports idle
        (after the last output it sent) with nothing queued, every output is on the page.
        """
        return self.kernel == "idle" and not self.rendering and any(c.executed for c in self.cells)


def snapshot_of(raw: dict[str, Any] | None) -> Snapshot | None:
    if raw is None:
        return None
    cells = tuple(
        Cell(c["prompt"], tuple(Output(**{**o, "images": tuple(o["images"])}) for o in c["outputs"]))
        for c in raw["cells"]
    )
    return Snapshot(raw["kernel"], raw["dialog"], cells)


class NotebookPage:
    """One browser tab on a served JupyterLab, showing one notebook at a time."""

    def __init__(self, page: Page, server: LabServer) -> None:
        self.page = page
        self.server = server
        self.notebook = ""

    def snapshot(self) -> Snapshot | None:
        return snapshot_of(self.page.evaluate(_SNAPSHOT_JS))

    def _describe(self) -> str:
        snap = self.snapshot()
        if snap is None:
            return "no notebook on the page"
        prompts = " ".join(c.prompt for c in snap.cells)
        dialog = f", a dialog: {snap.dialog!r}" if snap.dialog else ""
        return f"kernel {snap.kernel or '?'}, prompts {prompts}{dialog}"

    def wait(self, condition: str, check: Callable[[Snapshot], bool], timeout: float) -> Snapshot:
        """Poll the page until `check(snapshot)` holds; fail naming `condition` and what the page showed."""
        try:
            found: Snapshot = wait_for(
                lambda: (snap := self.snapshot()) is not None and check(snap) and snap,
                timeout=timeout,
                what=condition,
                interval=0.25,
            )
        except AssertionError as err:
            raise AssertionError(f"{self.notebook}: {err} ({self._describe()})") from None
        return found

    def open(self, notebook: str, timeout: float = 120) -> Snapshot:
        """Open `notebook` alone and wait until all its code cells are on the page and its fresh kernel is idle."""
        self.notebook = notebook
        code_cells = sum(c["cell_type"] == "code" for c in self.server.saved(notebook)["cells"])
        self.page.goto(self.server.page_url(notebook))
        # The page shows "idle" before it has a kernel at all, so the server must say its kernel is idle too.
        return self.wait(
            f"{code_cells} code cells and an idle kernel",
            lambda s: len(s.cells) == code_cells and s.kernel == "idle" and self.server.kernel_idle(notebook),
            timeout,
        )

    def run_all(self, timeout: float = 900) -> Snapshot:
        """Run → Run All Cells, as a person clicks it; returns the page once the run is over and everything drew."""
        before = self.snapshot()
        assert before is not None and not any(c.executed for c in before.cells), (
            f"{self.notebook} shows executed cells before Run All; open it with a fresh kernel"
        )
        self.page.get_by_role("menuitem", name="Run", exact=True).click()
        self.page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
        return self.wait("Run All to finish", lambda s: s.finished, timeout)

    def clear_outputs(self, timeout: float = 30) -> Snapshot:
        """Edit → "Clear Outputs of All Cells", as before running a notebook that was saved with its outputs."""
        self.page.get_by_role("menuitem", name="Edit", exact=True).click()
        self.page.get_by_role("menuitem", name="Clear Outputs of All Cells", exact=True).click()
        return self.wait("the outputs to be cleared", lambda s: not any(c.executed for c in s.cells), timeout)

    def _code_cell(self, containing: str) -> Any:
        cells = self.page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell.jp-CodeCell")
        cell = cells.filter(has=self.page.locator(".jp-InputArea-editor", has_text=containing))
        assert cell.count() == 1, f"{self.notebook}: {cell.count()} code cells hold {containing!r}"
        return cell

    def pick(self, widget: int, names: list[str]) -> None:
        """Choose exactly the nodes `names` in the `widget`-th node picker on the page, as a person does by clicking.

        Options read "name (roles)", and the roles change as nodes get labels, so options are found by name.
        """
        select = self.page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .widget-select-multiple select").nth(widget)
        texts: list[str] = select.locator("option").all_text_contents()
        wanted = [i for i, text in enumerate(texts) if text.split()[0] in names]  # split(): the spaces are \xa0
        assert len(wanted) == len(names), f"{self.notebook}: the picker offers {texts}, not all of {names}"
        select.select_option(index=wanted)

    def run_from(self, containing: str, timeout: float = 300) -> Snapshot:
        """Select the code cell holding `containing`, then Run → "Run Selected Cell and All Below"; the page after."""
        cell = self._code_cell(containing)
        index = self._index_of(containing)
        before = self.snapshot()
        assert before is not None
        cell.locator(".jp-InputArea-prompt").click()
        self.page.get_by_role("menuitem", name="Run", exact=True).click()
        self.page.get_by_role("menuitem", name="Run Selected Cell and All Below", exact=True).click()
        was = before.cells[index].prompt
        return self.wait(
            f"the run from {containing!r} to finish",
            lambda s: s.cells[index].prompt not in (was, "[*]:") and s.kernel == "idle" and not s.rendering,
            timeout,
        )

    def _index_of(self, containing: str) -> int:
        found: int = self.page.evaluate(
            """text => [...document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell.jp-CodeCell')]
                 .findIndex(c => c.querySelector('.jp-InputArea-editor')?.textContent.includes(text))""",
            containing,
        )
        assert found >= 0, f"{self.notebook}: no code cell holds {containing!r}"
        return found

    def append_to_cell(self, containing: str, line: str) -> None:
        """Type `line` as a new last line of the code cell holding `containing` (inserted whole, so the editor's
        bracket and quote completion cannot change it)."""
        editor = self._code_cell(containing).locator(".cm-content")
        editor.click()
        self.page.keyboard.press("Control+End")
        self.page.keyboard.press("Enter")
        self.page.keyboard.insert_text(line)
        self.page.keyboard.press("Escape")

    def save(self, timeout: float = 30) -> dict[str, Any]:
        """File → Save (Ctrl+S); returns the notebook as saved, once the file holds what the page shows."""
        shown = self.snapshot()
        assert shown is not None
        counts = [c.prompt for c in shown.cells]
        self.page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook").click(position={"x": 5, "y": 5})
        self.page.keyboard.press("Control+s")

        def saved() -> dict[str, Any] | None:
            nb = self.server.saved(self.notebook)
            stored = [f"[{c.get('execution_count') or ' '}]:" for c in nb["cells"] if c["cell_type"] == "code"]
            return nb if stored == counts else None

        found: dict[str, Any] = wait_for(saved, timeout=timeout, what=f"{self.notebook} to be saved", interval=0.2)
        return found

    def screenshot(self, path: Path) -> None:
        """The whole notebook in one picture, from its top: the window is made as tall as the notebook, then back."""
        panel = self.page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
        height = panel.evaluate(
            """panel => {
              const inner = panel.querySelector('.jp-WindowedPanel-outer');
              inner.scrollTop = 0;
              return inner.scrollHeight + (window.innerHeight - inner.clientHeight);
            }"""
        )
        viewport = self.page.viewport_size
        assert viewport is not None
        path.parent.mkdir(parents=True, exist_ok=True)
        # Chromium draws at most 16384 px in one go; a longer notebook is cut there.
        self.page.set_viewport_size({"width": viewport["width"], "height": min(int(height), 16000)})
        try:
            # Two frames: one for JupyterLab to lay out at the new size, one for the cells it then shows to paint.
            self.page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
            panel.screenshot(path=str(path))
        finally:
            self.page.set_viewport_size(viewport)
