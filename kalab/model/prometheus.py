"""Prometheus text exposition → tidy pandas frames: one row per sample, one column per label.

Parsing is prometheus_client's. Its parser renames a counter's samples to ``<name>_total`` even when the
exposition printed the bare name (as keepalived_exporter does: ``keepalived_vrrp_advert_sent 2``); the frame
shows the name that was printed, so a scrape and the lab's own samples (kalab.model.exporter) line up.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Final

import pandas as pd
from prometheus_client.parser import text_string_to_metric_families

from kalab.model.errors import KalabError
from kalab.model.exporter import Sample

BASE_COLUMNS: Final = ("metric", "value")
# The metric name at the start of a sample line: everything up to the label set or the value.
_LEADING_NAME: Final = re.compile(r"[^{\s]+")


def _sample_lines(text: str) -> list[str]:
    """The lines the parser turns into samples: not blank, not a comment (# HELP/# TYPE included)."""
    return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


def _printed_name(line: str) -> str:
    match = _LEADING_NAME.match(line)
    return match.group(0) if match else ""


def _offending_line(text: str) -> str | None:
    """The parser's errors don't say where; re-parse line by line to find the first line it refuses."""
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            list(text_string_to_metric_families(line + "\n"))
        except (ValueError, IndexError, KeyError, TypeError):
            return line.strip()
    return None


def _parsed(text: str) -> Iterator[tuple[str, dict[str, str], float]]:
    try:
        families = list(text_string_to_metric_families(text))
    except (ValueError, IndexError, KeyError, TypeError) as err:
        line = _offending_line(text)
        where = f"at line {line!r}" if line else f"({err})"
        raise KalabError(f"This is not Prometheus text exposition format: the parser stopped {where}.") from None
    for family in families:
        for sample in family.samples:
            yield sample.name, dict(sample.labels), float(sample.value)


def samples_from_exposition(text: str) -> list[Sample]:
    """Every sample in an exposition, named as it was printed (no ``_total`` the exporter never wrote)."""
    parsed = list(_parsed(text))
    printed = [_printed_name(line) for line in _sample_lines(text)]
    # The parser yields exactly one sample per sample line, in order; if that ever stops holding, keep
    # the parser's names rather than guess.
    names = printed if len(printed) == len(parsed) else [name for name, _, _ in parsed]
    return [Sample(name, labels, value) for name, (_, labels, value) in zip(names, parsed, strict=True)]


def samples_to_frame(samples: Iterable[Sample], **extra_columns: object) -> pd.DataFrame:
    """The tidy frame: metric, value, one column per label (sorted; None where absent), then extra_columns."""
    samples = list(samples)
    label_names = sorted({k for s in samples for k, _ in s.labels})
    clash = set(extra_columns) & ({*BASE_COLUMNS, *label_names})
    if clash:
        raise KalabError(f"Extra column {sorted(clash)[0]!r} clashes with a metric column or label; rename it.")
    bad_label = set(label_names) & set(BASE_COLUMNS)
    if bad_label:
        raise KalabError(f"A label is called {sorted(bad_label)[0]!r}, which the frame uses for itself.")
    columns = [*BASE_COLUMNS, *label_names, *extra_columns]
    rows = [{"metric": s.name, "value": s.value, **s.label_dict, **extra_columns} for s in samples]
    frame = pd.DataFrame(rows, columns=columns)
    frame["value"] = frame["value"].astype(float)
    return frame


def parse_exposition(text: str, **extra_columns: object) -> pd.DataFrame:
    """A scrape as a tidy frame; extra_columns become constant columns (e.g. node="master-1", scraped_at=t)."""
    return samples_to_frame(samples_from_exposition(text), **extra_columns)


def _slope(samples: pd.DataFrame) -> tuple[float, float]:
    """(per second, seconds) of a counter between its first and last scrape."""
    first, last = samples.iloc[0], samples.iloc[-1]
    seconds = (last["scraped_at"] - first["scraped_at"]).total_seconds()
    return ((last["value"] - first["value"]) / seconds if seconds > 0 else float("nan")), seconds


def advert_rates(scrapes: pd.DataFrame, instance: str) -> pd.DataFrame:
    """Adverts sent and received per second by each node for `instance` between its first and last scrape, and
    its last state.

    `scrapes` are parse_exposition frames (with node and scraped_at) concatenated over time. The MASTER sends one
    advert per advert_int, so its rate shows the interval keepalived really runs with, whatever the config says; a
    BACKUP receiving at that rate proves it understands those adverts (same VRRP version, same instance).
    """
    columns = ["node", "state", "adverts_per_s", "received_per_s", "seconds"]
    if not {"metric", "name", "node", "scraped_at", "value"} <= set(scrapes.columns):
        return pd.DataFrame(columns=columns)
    mine = scrapes[scrapes["name"] == instance].sort_values("scraped_at")
    rows = []
    for node, samples in mine[mine["metric"] == "keepalived_vrrp_advert_sent"].groupby("node", sort=True):
        sent, seconds = _slope(samples)
        received_samples = mine[(mine["metric"] == "keepalived_vrrp_advert_rcvd") & (mine["node"] == node)]
        received = _slope(received_samples)[0] if len(received_samples) else float("nan")
        rows.append(
            {
                "node": node,
                "state": samples.iloc[-1].get("state"),
                "adverts_per_s": sent,
                "received_per_s": received,
                "seconds": seconds,
            }
        )
    return pd.DataFrame(rows, columns=columns)
