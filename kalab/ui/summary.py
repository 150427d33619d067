"""Record a notebook's headline results so `kalab run` can gather them (see kalab.model.summary)."""

from __future__ import annotations

import html
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


def json_safe(**values: Any) -> dict[str, Any]:
    """`values` as plain JSON data: tables become lists of rows, numpy scalars Python numbers, NaN None."""
    plain: dict[str, Any] = _no_nan(json.loads(json.dumps(values, default=_default)))
    return plain


def record(section: str, **values: Any) -> None:
    """Keep `values` as this notebook's `section` of the run summary that `kalab run` gathers.

    The values travel in their own MIME type; the notebook shows only a short line naming them (they are in the
    tables above), and nothing is returned, so the cell shows nothing a second time.
    """
    plain = json_safe(**values)
    names = ", ".join(plain) or "nothing"
    text = f"recorded for the run summary: {section} ({names})"
    bundle = {SUMMARY_MIME: {section: plain}, "text/plain": text, "text/html": f"<small>{html.escape(text)}</small>"}
    display(bundle, raw=True)  # type: ignore[no-untyped-call]
