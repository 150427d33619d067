"""`kalab run`: execute every runbook notebook headless with papermill and keep HTML copies with the plots."""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from kalab.cli.output import atomic_path, check_out_dir, write_text_atomic
from kalab.model.errors import KalabError
from kalab.model.summary import collect, summary_lines

DEFAULT_NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


@dataclass(frozen=True)
class NotebookRun:
    notebook: str
    ok: bool
    seconds: float
    executed: str
    html: str | None
    error: str | None


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "run",
        help="run all runbook notebooks headless (papermill), writing executed notebooks and HTML",
        description="Execute the notebooks in order; stop at the first failure, since later steps build on it.",
    )
    parser.add_argument(
        "--notebooks", default=str(DEFAULT_NOTEBOOKS), help="folder of .ipynb files (default: %(default)s)"
    )
    parser.add_argument("--out", default="out", help="where executed notebooks and HTML go (default: %(default)s)")
    parser.add_argument(
        "--only", action="append", default=[], metavar="NAME", help="run only notebooks whose name starts with NAME"
    )
    parser.add_argument(
        "-p",
        "--parameter",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="papermill parameter for every notebook; VALUE is parsed as JSON when it can be",
    )
    parser.add_argument("--kernel", default="python3", help="Jupyter kernel name (default: %(default)s)")
    parser.add_argument(
        "--timeout", type=float, default=900.0, help="seconds a single cell may run (default: %(default)s)"
    )
    parser.add_argument(
        "--lab",
        action="store_true",
        help="start a fresh lab first (down, then up), run the notebooks against it, and stop it at the end",
    )
    parser.add_argument("--name", help="with --lab: which lab (default: $KALAB_LAB, else 'default')")
    parser.set_defaults(handler=handle)


def parse_parameters(items: list[str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.isidentifier():
            raise KalabError(f"Parameter {item!r} is not KEY=VALUE with a Python name as KEY, e.g. -p trials=5.")
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    return params


def find_notebooks(folder: Path, only: list[str]) -> list[Path]:
    if not folder.is_dir():
        raise KalabError(f"{folder} is not a folder of notebooks; pass --notebooks DIR.")
    found = sorted(p for p in folder.glob("*.ipynb") if not p.name.startswith("."))
    if only:
        found = [p for p in found if any(p.name.startswith(prefix) for prefix in only)]
    if not found:
        raise KalabError(f"No notebooks to run in {folder}{' matching ' + ', '.join(only) if only else ''}.")
    return found


# ipykernel, shutting down, warns of a coroutine it never awaited and fails to print that warning because its event
# loop is already closed: a traceback on stderr after every notebook, although nothing went wrong. Kernels inherit
# this filter through the environment (PYTHONWARNINGS is read when a Python process starts, so ours is unaffected).
QUIET_KERNEL_SHUTDOWN = "ignore:coroutine 'Kernel.dispatch_control' was never awaited:RuntimeWarning"


def _quiet_kernel_shutdown() -> None:
    present = [w for w in os.environ.get("PYTHONWARNINGS", "").split(",") if w]
    if QUIET_KERNEL_SHUTDOWN not in present:
        os.environ["PYTHONWARNINGS"] = ",".join([*present, QUIET_KERNEL_SHUTDOWN])


def execute(notebook: Path, out: Path, params: dict[str, Any], kernel: str, timeout: float) -> NotebookRun:
    # papermill and nbconvert import slowly; only pay for them when running notebooks.
    _quiet_kernel_shutdown()
    import nbformat
    import papermill
    from nbclient.exceptions import DeadKernelError
    from nbconvert import HTMLExporter

    from kalab.cli.kernel import kernel_manager_logging_to, last_words, say_kernel_death_once

    say_kernel_death_once()

    executed = out / notebook.name
    started = time.monotonic()
    error: str | None = None
    with atomic_path(executed) as partial, tempfile.TemporaryDirectory(prefix="kalab-kernel-") as scratch:
        kernel_log = Path(scratch) / "kernel.log"  # an interrupted run leaves no half-written notebook, nor this
        with kernel_log.open("wb") as log:
            try:
                papermill.execute_notebook(
                    str(notebook),
                    str(partial),
                    parameters=params,
                    kernel_name=kernel,
                    cwd=str(notebook.parent),
                    execution_timeout=timeout,
                    progress_bar=False,
                    kernel_manager_class=kernel_manager_logging_to(log),
                    extra_arguments=["--IPKernelApp.log_level=ERROR"],
                )
            except papermill.PapermillExecutionError as err:  # the notebook is still written, showing where it failed
                error = f"cell {err.exec_count}: {err.ename}: {err.evalue}"
            except DeadKernelError:
                log.flush()
                error = f"the kernel died ({last_words(kernel_log) or 'it wrote nothing'})"
    seconds = time.monotonic() - started
    html: Path | None = None
    if executed.exists():
        body, _ = HTMLExporter().from_notebook_node(nbformat.read(str(executed), as_version=4))  # type: ignore[no-untyped-call]
        html = executed.with_suffix(".html")
        write_text_atomic(html, body)
    return NotebookRun(
        notebook.name, error is None, round(seconds, 2), str(executed), str(html) if html else None, error
    )


def run_all(notebooks: list[Path], out: Path, params: dict[str, Any], kernel: str, timeout: float) -> int:
    runs: list[NotebookRun] = []
    for notebook in notebooks:
        print(f"▶ {notebook.name} …", flush=True)
        run = execute(notebook, out, params, kernel, timeout)
        runs.append(run)
        print(f"  {'✅' if run.ok else '❌'} {run.seconds:.1f} s → {run.html or run.executed}", flush=True)
        if not run.ok:
            break
    write_text_atomic(out / "run.json", json.dumps([asdict(r) for r in runs], indent=2) + "\n")
    failed = [r for r in runs if not r.ok]
    if failed:
        raise KalabError(f"{failed[0].notebook} failed ({failed[0].error}); open {failed[0].executed} to see where.")
    summary = gather_summary([Path(r.executed) for r in runs])
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    print(f"{len(runs)} notebook(s) ran; results in {out}/")
    lines = summary_lines(summary)
    if lines:
        print("\n".join(["", "Summary (also in summary.json):", *(f"  {line}" for line in lines)]), flush=True)
    return 0


def gather_summary(executed: list[Path]) -> dict[str, Any]:
    """The summary sections the executed notebooks recorded (kalab.ui.summary.record), in run order."""
    import nbformat

    outputs = []
    for path in executed:
        notebook = nbformat.read(str(path), as_version=4)  # type: ignore[no-untyped-call]
        outputs += [out for cell in notebook.cells for out in cell.get("outputs", [])]
    return collect(outputs)


def run_on_fresh_lab(notebooks: list[Path], out: Path, params: dict[str, Any], args: argparse.Namespace) -> int:
    """Stop the named lab if it runs, start it fresh, run against it, and stop it even on failure."""
    from kalab.lab import control

    name = control.lab_name(args.name)
    control.down(name)
    try:
        print(f"▶ starting a fresh lab {name} …", flush=True)
        control.up(name)
        lab_params = {"lab_name": name}  # the notebooks attach to it by name (its undo journal goes with it)
        return run_all(notebooks, out, {**params, **lab_params}, args.kernel, args.timeout)
    finally:
        control.down(name)
        print(f"▶ lab {name} stopped", flush=True)


def handle(args: argparse.Namespace) -> int:
    out = check_out_dir(args.out)  # before any notebook runs
    params = parse_parameters(args.parameter)
    notebooks = find_notebooks(Path(args.notebooks), args.only)
    out.mkdir(parents=True, exist_ok=True)
    if args.lab:
        return run_on_fresh_lab(notebooks, out, params, args)
    return run_all(notebooks, out, params, args.kernel, args.timeout)
