"""The runbook's headline results: what each notebook records, gathered into one summary after a headless run.

A notebook records a section (e.g. "failover") as a JSON object in an output of its own MIME type; `kalab run`
collects them from the executed notebooks, writes `summary.json` and prints the few lines a trainer reads first.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

SUMMARY_MIME = "application/vnd.kalab.summary+json"


def collect(outputs: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Merge the summary sections found in notebook outputs (later sections of the same name win)."""
    summary: dict[str, Any] = {}
    for output in outputs:
        data = output.get("data") or {}
        section = data.get(SUMMARY_MIME)
        if isinstance(section, Mapping):
            for name, values in section.items():
                summary[str(name)] = values
    return summary


def _ms(value: Any) -> str:
    return "—" if value is None else f"{float(value):.0f} ms"


def _pod_share(pod: Mapping[str, Any]) -> str:
    counted = f"{pod['requests']} " if "requests" in pod else ""
    return f"{pod['pod']} {counted}({pod['share']:.0%})" if counted else f"{pod['pod']} {pod['share']:.0%}"


def summary_lines(summary: Mapping[str, Any]) -> list[str]:
    """A handful of lines: VIP, MASTER node, traffic spread, measured vs expected failover."""
    lines: list[str] = []
    demo = summary.get("demo") or {}
    if demo:
        lines.append(f"VIP            {demo.get('vip')} (service {demo.get('service')})")
    metrics = summary.get("metrics") or {}
    if metrics:
        lines.append(f"MASTER node    {metrics.get('master')} (advertising {metrics.get('adverts_per_s', 0):.2f}/s)")
    traffic = summary.get("traffic") or {}
    if traffic:
        spread = ", ".join(
            f"{p['pod']} {p['requests']} ({p['share'] * 100:.0f}%)"
            if "requests" in p
            else f"{p['pod']} {p['share']:.0%}"
            for p in traffic.get("pods", [])
        )
        lines.append(f"traffic        {traffic.get('requests')} requests: {spread}")
    for row in (summary.get("failover") or {}).get("comparison", []):
        lines.append(
            f"failover       {row['kind']:<9} advert_int {row['advert_int']:g} s v{row['vrrp_version']}: takeover "
            f"{_ms(row['takeover_ms'])} (formula {_ms(row['expected_min_takeover_ms'])}–"
            f"{_ms(row['expected_takeover_ms'])}), clients lost {_ms(row['outage_ms'])}"
            f"{'' if row['within_formula'] else '  ⚠ outside the formula'}"
        )
    return lines
