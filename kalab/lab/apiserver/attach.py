"""`pods/attach`: the same channel protocol as exec, but onto the container's running program, not a new one.

The kubelet offers `attach(request) -> ExecSession` beside its PodHooks; the API server streams that session with
the exec machinery (kalab.lab.apiserver.streams), so websocket negotiation, channels and the final status are
the same as for `kubectl exec`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from kalab.lab.apiserver.hooks import ExecRequest, ExecSession, PodHooks


class _Attaching:
    """PodHooks whose exec attaches (the stream code calls `exec`); everything else is the kubelet's own."""

    def __init__(self, hooks: PodHooks, attach: Callable[[ExecRequest], ExecSession]) -> None:
        self._hooks = hooks
        self._attach = attach

    def exec(self, request: ExecRequest) -> ExecSession:
        return self._attach(request)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._hooks, name)


def attach_hooks(hooks: PodHooks) -> PodHooks | None:
    """Hooks that attach instead of exec, or None when this kubelet cannot attach."""
    attach = getattr(hooks, "attach", None)
    if not callable(attach):
        return None
    return cast(PodHooks, _Attaching(hooks, attach))
