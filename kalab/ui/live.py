"""A live chart: a figure redrawn in place from a callable every few seconds, for a bounded time.

The loop blocks the cell on purpose: a background thread would outlive the cell, keep scraping after the user
moved on and make a headless run's output depend on timing. Bounded by `duration_s`, it always ends.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pandas as pd
from IPython.display import Image, display
from matplotlib.figure import Figure

from kalab.cluster.connect import Cluster
from kalab.cluster.exporter import scrape_all
from kalab.cluster.keepalived import DEFAULT_GROUP, DEFAULT_NAMESPACE
from kalab.ui.figure import figure_png
from kalab.ui.plots import plot_exporter_metrics


class LiveChart:
    """A chart that `run()` redraws in place with `draw()`'s figure every `every_s` seconds for `duration_s`.

    It is one display output updated in place (IPython's display_id), not a widget: in the browser it is live,
    and the last drawing is what stays in the notebook, so a saved or headless-run notebook shows the chart once.
    `draw` typically scrapes the exporter, appends the frame to a list and returns plot_exporter_metrics(list).
    """

    def __init__(
        self,
        draw: Callable[[], Figure],
        every_s: float = 2.0,
        duration_s: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        show: Callable[[Image], Any] | None = None,
    ) -> None:
        if every_s <= 0 or duration_s < 0:
            raise ValueError("every_s must be positive and duration_s not negative")
        self.draw = draw
        self.every_s = every_s
        self.duration_s = duration_s
        self._sleep = sleep
        self._clock = clock
        self._show = show
        self._handle: Any = None
        self.frames = 0
        self.png = b""
        self.last: Figure | None = None

    def refresh(self) -> Figure:
        """Draw once and show it in place of the previous drawing."""
        fig = self.draw()
        self.png = figure_png(fig, dpi=80)
        image = Image(data=self.png, format="png")  # type: ignore[no-untyped-call]
        if self._show is not None:
            self._show(image)
        elif self._handle is None:
            self._handle = display(image, display_id=True)  # type: ignore[no-untyped-call]
        else:
            self._handle.update(image)
        self.frames += 1
        self.last = fig
        return fig

    def run(self) -> None:
        """Refresh until `duration_s` has passed (at least once); the chart's last drawing stays in the output."""
        deadline = self._clock() + self.duration_s
        while True:
            started = self._clock()
            self.refresh()
            if started + self.every_s > deadline:
                break
            self._sleep(max(0.0, started + self.every_s - self._clock()))


class ExporterChart(LiveChart):
    """The exporters' VRRP states and advert counters, scraped through the API every `every_s` s, drawn live.

    `scrapes` holds every scrape so far (one frame), for tables such as kalab.model.prometheus.advert_rates.
    """

    def __init__(
        self,
        cluster: Cluster,
        instance: str | None = None,
        every_s: float = 1.0,
        duration_s: float = 6.0,
        namespace: str = DEFAULT_NAMESPACE,
        group: str = DEFAULT_GROUP,
    ) -> None:
        self._frames: list[pd.DataFrame] = []

        def draw() -> Figure:
            self._frames.append(scrape_all(cluster, namespace, group))
            return plot_exporter_metrics(self._frames, instance=instance)

        super().__init__(draw, every_s=every_s, duration_s=duration_s)

    @property
    def scrapes(self) -> pd.DataFrame:
        return pd.concat(self._frames, ignore_index=True) if self._frames else pd.DataFrame()
