"""record(): a notebook's headline results become JSON-safe and travel in their own MIME type."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest

from kalab.model.summary import SUMMARY_MIME, collect
from kalab.ui.summary import json_safe, record


def test_record_makes_values_json_safe_and_displays_them(monkeypatch: pytest.MonkeyPatch) -> None:
    shown: list[dict[str, Any]] = []
    monkeypatch.setattr(
        "kalab.ui.summary.display", lambda data, raw: shown.append(data) if raw else pytest.fail("not raw")
    )
    frame = pd.DataFrame({"pod": ["test-0", "test-1"], "share": [0.5, np.float64(0.5)]})
    assert record("traffic", requests=np.int64(200), lost=math.nan, pods=frame) is None  # shown once, not twice
    plain = json_safe(requests=np.int64(200), lost=math.nan, pods=frame)
    assert plain == {
        "requests": 200,
        "lost": None,
        "pods": [{"pod": "test-0", "share": 0.5}, {"pod": "test-1", "share": 0.5}],
    }
    assert type(plain["requests"]) is int
    (bundle,) = shown
    assert bundle[SUMMARY_MIME] == {"traffic": plain}
    assert bundle["text/plain"] == "recorded for the run summary: traffic (requests, lost, pods)"
    assert bundle["text/html"] == "<small>recorded for the run summary: traffic (requests, lost, pods)</small>"
    assert collect([{"data": bundle}]) == {"traffic": plain}
    with pytest.raises(TypeError, match="object cannot go into the run summary"):
        record("bad", thing=object())
