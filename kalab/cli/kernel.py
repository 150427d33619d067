"""The kernel `kalab run` executes notebooks in, with its process's stderr kept apart from kalab's own.

A kernel writes to its stderr only about itself (transport warnings, and noise at shutdown: jupyter_client interrupts
a kernel before stopping it, and ipykernel or libzmq may report that interrupt). Cell errors reach us through
papermill. So the kernel's stderr goes to a file, and is shown only when the kernel itself died.
"""

from __future__ import annotations

import logging
import typing as t
from pathlib import Path

from jupyter_client.manager import AsyncKernelManager

TAIL_LINES = 5  # what a dead kernel's last words show of its log


def kernel_manager_logging_to(log: t.IO[bytes]) -> type[AsyncKernelManager]:
    """A kernel manager class (what nbclient instantiates) whose kernels write their stderr to `log`."""

    class LoggedKernelManager(AsyncKernelManager):
        async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: t.Any) -> None:
            kw.setdefault("stderr", log)
            return await super()._async_launch_kernel(kernel_cmd, **kw)

        _launch_kernel = _async_launch_kernel

    return LoggedKernelManager


class _KernelDeathSaidOnce(logging.Filter):
    """nbclient logs a dying kernel through papermill's logger; kalab's one sentence already says it, with the cause."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Kernel died")


def say_kernel_death_once() -> None:
    logger = logging.getLogger("papermill")
    if not any(isinstance(f, _KernelDeathSaidOnce) for f in logger.filters):
        logger.addFilter(_KernelDeathSaidOnce())


def last_words(log: Path) -> str:
    """The end of a kernel's log, on one line, for the sentence that says it died."""
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    return " / ".join(lines[-TAIL_LINES:])
