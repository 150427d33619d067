"""What a probe run produces, as data: one record per request, its limits, the summary statistics, and the
CSV/DataFrame forms (the timeline kalab.model.failover reads). Pure and light: pandas is imported only by the
functions that build frames, because the prober process imports this module and must start fast.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kalab.model.errors import KalabError

if TYPE_CHECKING:
    import pandas as pd  # imported lazily: the prober itself must start fast and stay light

MAX_DURATION = 600.0
MAX_RATE = 2000.0
MAX_REQUESTS = 120_000
MAX_TIMEOUT = 30.0
CSV_COLUMNS = ("seq", "t_send", "latency_ms", "ok", "status", "error", "backend", "lag_ms")
FRAME_COLUMNS = ("seq", "t", "latency_ms", "ok", "status", "error", "backend", "lag_ms")


@dataclass(frozen=True, slots=True)
class ProbeRecord:
    """One request: when it was sent (unix seconds), how it went, and which pod answered."""

    seq: int
    t_send: float
    latency_ms: float
    ok: bool
    status: int | None
    error: str  # "" when ok; "timeout", an errno name such as ECONNREFUSED, "HTTP 503", "bad response"
    backend: str | None  # the pod IP the demo page ends with
    lag_ms: float  # how late the send was against its schedule


@dataclass(frozen=True)
class ProbeSummary:
    requests: int
    ok: int
    failed: int
    duration_s: float  # first send to last send
    rate_hz: float  # planned
    achieved_rate_hz: float
    p50_ms: float | None  # latency of successful requests
    p99_ms: float | None
    max_lag_ms: float  # the worst scheduling error of any send
    p99_lag_ms: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_limits(duration: float, rate: float, timeout: float) -> int:
    """Validate the load and return the number of requests planned (`duration` × `rate`, rounded)."""
    if not 0 < duration <= MAX_DURATION:
        raise KalabError(f"The probe duration must be more than 0 and at most {MAX_DURATION:g} s (got {duration:g}).")
    if not 0 < rate <= MAX_RATE:
        raise KalabError(f"The probe rate must be more than 0 and at most {MAX_RATE:g} Hz (got {rate:g}).")
    if not 0 < timeout <= MAX_TIMEOUT:
        raise KalabError(f"The probe timeout must be more than 0 and at most {MAX_TIMEOUT:g} s (got {timeout:g}).")
    planned = max(1, round(duration * rate))
    if planned > MAX_REQUESTS:
        raise KalabError(
            f"A probe of {duration:g} s at {rate:g} Hz means {planned} requests; keep it to "
            f"{MAX_REQUESTS} by lowering the rate or the duration."
        )
    return planned


def _percentile(sorted_values: Sequence[float], q: float) -> float | None:
    if not sorted_values:
        return None
    rank = max(0, min(len(sorted_values) - 1, round(q * (len(sorted_values) - 1))))
    return float(sorted_values[rank])


def summarise(records: Sequence[ProbeRecord], rate: float) -> ProbeSummary:
    ok = [r for r in records if r.ok]
    sends = sorted(r.t_send for r in records)
    span = sends[-1] - sends[0] if len(sends) > 1 else 0.0
    latencies = sorted(r.latency_ms for r in ok)
    lags = sorted(r.lag_ms for r in records)
    return ProbeSummary(
        requests=len(records),
        ok=len(ok),
        failed=len(records) - len(ok),
        duration_s=round(span, 6),
        rate_hz=rate,
        achieved_rate_hz=round((len(sends) - 1) / span, 3) if span > 0 else 0.0,
        p50_ms=_percentile(latencies, 0.50),
        p99_ms=_percentile(latencies, 0.99),
        max_lag_ms=lags[-1] if lags else 0.0,
        p99_lag_ms=_percentile(lags, 0.99) or 0.0,
    )


def write_csv(records: Sequence[ProbeRecord], path: Path) -> None:
    with Path(path).open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(CSV_COLUMNS)
        for r in records:
            writer.writerow(
                (
                    r.seq,
                    f"{r.t_send:.6f}",
                    f"{r.latency_ms:.3f}",
                    r.ok,
                    "" if r.status is None else r.status,
                    r.error,
                    r.backend or "",
                    f"{r.lag_ms:.3f}",
                )
            )


def records_to_frame(records: Sequence[ProbeRecord]) -> pd.DataFrame:
    """Records as the timeline `kalab.model.failover.analyse_outage` reads: `t` (send time), `ok`, `backend`, ..."""
    import pandas as pd

    frame = pd.DataFrame(
        {
            "seq": [r.seq for r in records],
            "t": [r.t_send for r in records],
            "latency_ms": [r.latency_ms for r in records],
            "ok": [r.ok for r in records],
            "status": pd.array([r.status for r in records], dtype="Int64"),
            "error": [r.error for r in records],
            "backend": pd.Series([r.backend for r in records], dtype="object"),
            "lag_ms": [r.lag_ms for r in records],
        },
        columns=list(FRAME_COLUMNS),
    )
    return frame


def read_csv(path: Path) -> pd.DataFrame:
    """A CSV written by the prober, as the same frame `records_to_frame` builds."""
    import pandas as pd

    raw = pd.read_csv(path, dtype={"error": "string", "backend": "string"}, keep_default_na=False)
    missing = [c for c in CSV_COLUMNS if c not in raw.columns]
    if missing:
        raise KalabError(f"{path} is not a probe CSV: it lacks the column(s) {', '.join(missing)}.")
    backend = raw["backend"].astype(object)
    return pd.DataFrame(
        {
            "seq": raw["seq"].astype(int),
            "t": raw["t_send"].astype(float),
            "latency_ms": raw["latency_ms"].astype(float),
            "ok": raw["ok"].astype(str).str.lower().eq("true"),
            "status": pd.to_numeric(raw["status"], errors="coerce").astype("Int64"),
            "error": raw["error"].astype(str),
            "backend": backend.where(backend != "", None),
            "lag_ms": raw["lag_ms"].astype(float),
        },
        columns=list(FRAME_COLUMNS),
    )
