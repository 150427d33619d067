"""The runbook's input widgets: node picker, CIDR planner, interface picker.

Each takes plain data (names, roles, CIDR strings), so it does not care where that data came from. Each is
built with an initial value and works without a click: `.value` is what the notebook passes on, so a papermill
run that sets the parameter cell gets the same result as a user who clicks.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import ipywidgets as widgets

from kalab.model.cidr import CidrPlan, plan_cidr
from kalab.model.errors import KalabError

_SEPARATORS = re.compile(r"[,\s]+")


def _split_list(text: str) -> list[str]:
    """ "a, b c" → ["a", "b", "c"]: users paste CIDR lists with commas, spaces or newlines."""
    return [part for part in _SEPARATORS.split(text.strip()) if part]


class _Displayable:
    """Shows `self.widget` when the object is the last expression of a cell."""

    widget: Any

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)


# --- node picker ---------------------------------------------------------------------------------------


class NodePicker(_Displayable):
    """Choose nodes (for the loadbalancer role, or where demo pods pin) from the cluster's node names and roles."""

    def __init__(
        self,
        nodes: Mapping[str, Sequence[str]] | Iterable[str],
        value: Sequence[str] | None = None,
        description: str = "Nodes",
    ) -> None:
        roles = dict(nodes) if isinstance(nodes, Mapping) else {name: () for name in nodes}
        if not roles:
            raise KalabError("There are no nodes to choose from; check that the cluster is reachable and has nodes.")
        self.roles: dict[str, tuple[str, ...]] = {name: tuple(r) for name, r in roles.items()}
        options = [(self._label(name), name) for name in sorted(self.roles)]
        # "initial" sizes the description to its text: the default fixed width cuts labels such as "Loadbalancer".
        self.select = widgets.SelectMultiple(
            options=options,
            rows=min(len(options), 8),
            description=description,
            layout=widgets.Layout(width="auto"),
            style={"description_width": "initial"},
        )
        self.widget = self.select
        # No initial choice means every node: the seed gives the loadbalancer role to all of them.
        self.value = sorted(self.roles) if value is None else value

    def _label(self, name: str) -> str:
        roles = self.roles[name]
        return f"{name} ({', '.join(roles)})" if roles else name

    @property
    def value(self) -> list[str]:
        return list(self.select.value)

    @value.setter
    def value(self, names: Sequence[str]) -> None:
        if isinstance(names, str):
            names = [names]
        unknown = [n for n in names if n not in self.roles]
        if unknown:
            raise KalabError(
                f"{', '.join(unknown)} {'is not a node' if len(unknown) == 1 else 'are not nodes'} of this cluster; "
                f"choose from {', '.join(sorted(self.roles))}."
            )
        self.select.value = tuple(sorted(set(names)))

    def with_role(self, role: str) -> list[str]:
        """Nodes carrying `role` (e.g. "master" or "worker"), to pre-select a sensible default."""
        return sorted(name for name, roles in self.roles.items() if role in roles)


# --- CIDR planner --------------------------------------------------------------------------------------


def plan_html(plan: CidrPlan, allowed: Sequence[str] = ()) -> str:
    """A CidrPlan as a short HTML summary: size and range when it parses, then every error and warning."""
    parts: list[str] = []
    if plan.network is not None:
        parts.append(
            f"<b>{html.escape(plan.network)}</b>: {plan.size} addresses, usable "
            f"{html.escape(str(plan.first))} – {html.escape(str(plan.last))}"
        )
    if allowed:
        parts.append("allowed: " + html.escape(", ".join(allowed)))
    parts += [f'<span style="color:#cf222e">❌ {html.escape(e)}</span>' for e in plan.errors]
    parts += [f'<span style="color:#9a6700">⚠️ {html.escape(w)}</span>' for w in plan.warnings]
    if plan.ok and not plan.warnings:
        parts.append('<span style="color:#1a7f37">✅ No clash with the cluster\'s networks.</span>')
    return '<div class="kalab-cidr-plan">' + "<br>".join(parts) + "</div>"


class CidrPlanner(_Displayable):
    """Text boxes for the auto-assign CIDR and the allowed CIDRs, re-validated on every change.

    `plan` is the latest CidrPlan for the auto-assign block; `value` is that block and `allowed` the allowed list.
    """

    def __init__(
        self,
        cidr: str = "172.21.6.32/27",
        allowed: Sequence[str] | None = None,
        cluster_network: str = "10.254.0.0/16",
        service_network: str = "172.30.0.0/16",
        machine_network: str | None = "192.168.7.0/24",
    ) -> None:
        self.cluster_network = cluster_network
        self.service_network = service_network
        self.machine_network = machine_network
        # The seed allows exactly the auto-assign block, so that is the default allowed list.
        allowed_list = [cidr] if allowed is None else list(allowed)
        self.cidr_text = widgets.Text(value=cidr, description="Auto-assign", continuous_update=False)
        self.allowed_text = widgets.Text(value=", ".join(allowed_list), description="Allowed", continuous_update=False)
        self.output = widgets.HTML()
        named = {"cluster": cluster_network, "service": service_network, "machine": machine_network}
        networks = ", ".join(f"{k} {v}" for k, v in named.items() if v)
        note = widgets.HTML(f"<small>Checked against the {html.escape(networks)} networks.</small>")
        self.widget = widgets.VBox([self.cidr_text, self.allowed_text, self.output, note])
        self.plan = self._replan()
        for box in (self.cidr_text, self.allowed_text):
            box.observe(lambda _change: self._replan(), names="value")

    def _replan(self) -> CidrPlan:
        self.plan = plan_cidr(
            self.value, self.allowed, self.cluster_network, self.service_network, self.machine_network
        )
        self.output.value = plan_html(self.plan, self.allowed)
        return self.plan

    @property
    def value(self) -> str:
        return str(self.cidr_text.value).strip()

    @value.setter
    def value(self, cidr: str) -> None:
        self.cidr_text.value = cidr

    @property
    def allowed(self) -> list[str]:
        return _split_list(str(self.allowed_text.value))

    @allowed.setter
    def allowed(self, cidrs: Sequence[str]) -> None:
        self.allowed_text.value = ", ".join(cidrs)

    def require_ok(self) -> CidrPlan:
        """The plan, or KalabError with its first error: call before patching the cluster's network config."""
        if not self.plan.ok:
            raise KalabError(self.plan.errors[0])
        return self.plan


# --- interface picker ----------------------------------------------------------------------------------


def interface_options(interfaces: Mapping[str, Sequence[str]]) -> list[tuple[str, str]]:
    """(label, name) per interface: those on every node first (keepalived needs the same name everywhere)."""
    nodes = sorted(interfaces)
    where: dict[str, list[str]] = {}
    for node in nodes:
        for name in interfaces[node]:
            where.setdefault(name, [])
            if node not in where[name]:
                where[name].append(node)

    def key(name: str) -> tuple[bool, bool, str]:
        # Common interfaces first, loopback last: a VIP on lo would never be announced on the segment.
        return (len(where[name]) != len(nodes), name == "lo", name)

    options = []
    for name in sorted(where, key=key):
        on = where[name]
        label = f"★ {name} (all {len(nodes)} nodes)" if len(on) == len(nodes) else f"{name} (only {', '.join(on)})"
        options.append((label, name))
    return options


class InterfacePicker(_Displayable):
    """Choose the interface keepalived binds to, from each node's real interfaces; common ones marked with ★."""

    def __init__(
        self, interfaces: Mapping[str, Sequence[str]], value: str | None = None, description: str = "Interface"
    ) -> None:
        self.interfaces = {node: list(names) for node, names in interfaces.items()}
        options = interface_options(self.interfaces)
        if not options:
            raise KalabError("No node reported any interface; check that the nodes' interfaces could be listed.")
        self.dropdown = widgets.Dropdown(options=options, description=description)
        self.note = widgets.HTML()
        self.widget = widgets.VBox([self.dropdown, self.note])
        self.dropdown.observe(lambda _change: self._update_note(), names="value")
        self.value = options[0][1] if value is None else value
        self._update_note()

    @property
    def value(self) -> str:
        return str(self.dropdown.value)

    @value.setter
    def value(self, name: str) -> None:
        names = [n for _, n in self.dropdown.options]
        if name not in names:
            raise KalabError(f"No node has an interface called {name!r}; choose from {', '.join(names)}.")
        self.dropdown.value = name

    def missing_on(self) -> list[str]:
        """Nodes without the chosen interface: keepalived would not start there."""
        return sorted(node for node, names in self.interfaces.items() if self.value not in names)

    def _update_note(self) -> None:
        missing = self.missing_on()
        self.note.value = (
            f'<span style="color:#cf222e">❌ {html.escape(self.value)} is missing on {html.escape(", ".join(missing))}'
            "; keepalived there would fail to start, so choose an interface every node has.</span>"
            if missing
            else ""
        )
