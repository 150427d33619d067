"""Record a notebook's headline results so `kalab run` can gather them (see kalab.model.summary)."""

from __future__ import annotations

import json
import math
from typing import Any

import pandas as pd
from IPython.display import display

from kalab.model.summary import SUMMARY_MIME


def _default(value: Any) -> Any:
    if isinstance(value, pd.DataFrame):
        return value.to_dict(orient="records")
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    raise TypeError(f"{type(value).__name__} cannot go into the run summary")


def _no_nan(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _no_nan(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_no_nan(v) for v in value]
    return value


def record(section: str, **values: Any) -> dict[str, Any]:
    """Show `values` as this notebook's `section` of the run summary, and return them JSON-safe."""
    plain: dict[str, Any] = _no_nan(json.loads(json.dumps(values, default=_default)))
    text = f"{section}: " + json.dumps(plain, ensure_ascii=False)
    display({SUMMARY_MIME: {section: plain}, "text/plain": text}, raw=True)  # type: ignore[no-untyped-call]
    return plain
