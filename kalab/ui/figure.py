"""Figures that show themselves in Jupyter and in exported HTML without pyplot's global state.

kalab's plots build `Figure` objects directly (no pyplot), so IPython's inline backend never registers a display
formatter for them; the `_repr_png_` hook makes every frontend, and nbconvert's HTML, render them as images.
"""

from __future__ import annotations

import io

from matplotlib.figure import Figure as _Figure


def figure_png(fig: _Figure, dpi: int = 100) -> bytes:
    """The figure rendered as PNG bytes (no pyplot, no display side effects)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


class Figure(_Figure):
    def _repr_png_(self) -> bytes:
        return figure_png(self)
