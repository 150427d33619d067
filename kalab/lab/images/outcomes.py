"""What the kubelet gets back when it asks what a container runs: a Program, a Refusal (never run), or a
ContainerConfigError (a missing env or volume source); and how it hands in ConfigMaps and Secrets (Lookup)."""

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

# Looks up a ConfigMap or Secret: (kind, namespace, name) → the object, or None when it does not exist.
Lookup = Callable[[str, str, str], Mapping[str, Any] | None]


@dataclass(frozen=True)
class Program:
    """A known image's program for one container: run `argv` with `env` inside the pod's network namespace."""

    role: str  # keepalived, config-setup, config-reloader, exporter, operator-manager, php-demo
    argv: tuple[str, ...]
    env: Mapping[str, str]
    # Run before every start, restarts included (keepalived: drop pid files a dead instance left behind).
    prepare: Callable[[], None] | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Refusal:
    """A container the lab will not run; `reason` and `message` go into its waiting state."""

    reason: str
    message: str


class UnknownImage(Refusal):
    """An image the lab does not know: the pod fails with ErrImagePull and nothing is executed."""


class BadContainer(Refusal):
    """A known image asked to do something the lab cannot map (unknown command, a path on no volume, …)."""


class ContainerConfigError(Exception):
    """A container's env or volume source is missing (CreateContainerConfigError / FailedMount)."""
