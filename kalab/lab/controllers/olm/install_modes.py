"""Whether a CSV's installModes allow the namespaces its OperatorGroup targets, worded as OLM words the refusal
(operator-framework/api's InstallModeSet.Supports); the CSV then fails with reason UnsupportedOperatorGroup."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

ALL_NAMESPACES = ""  # metav1.NamespaceAll: what an OperatorGroup without targetNamespaces selects


def unsupported(
    install_modes: Iterable[Mapping[str, Any]], operator_namespace: str, targets: Sequence[str]
) -> str | None:
    """Why the CSV cannot watch `targets` (as its olm.targetNamespaces annotation lists them), or None when it can."""
    supported = {str(m.get("type")): bool(m.get("supported")) for m in install_modes}
    if not targets:
        return "operatorgroup has invalid selected namespaces, cannot configure to watch zero namespaces"
    if len(targets) == 1:
        (target,) = targets
        if target == operator_namespace and not supported.get("OwnNamespace"):
            return "OwnNamespace InstallModeType not supported, cannot configure to watch own namespace"
        if target == ALL_NAMESPACES and not supported.get("AllNamespaces"):
            return "AllNamespaces InstallModeType not supported, cannot configure to watch all namespaces"
        if target not in (operator_namespace, ALL_NAMESPACES) and not supported.get("SingleNamespace"):
            return "SingleNamespace InstallModeType not supported, cannot configure to watch one namespace"
        return None
    if not supported.get("MultiNamespace"):
        return f"MultiNamespace InstallModeType not supported, cannot configure to watch {len(targets)} namespaces"
    for target in targets:
        if target == operator_namespace and not supported.get("OwnNamespace"):
            return "OwnNamespace InstallModeType not supported, cannot configure to watch own namespace"
        if target == ALL_NAMESPACES:
            return "operatorgroup has invalid selected namespaces, NamespaceAll found when |selected namespaces| > 1"
    return None
