import matplotlib
from matplotlib.figure import Figure

from kalab.ui.live import LiveChart, figure_png

matplotlib.use("Agg")


class FakeTime:
    """A clock that only moves when the chart sleeps, so the test runs instantly and deterministically."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def small_figure() -> Figure:
    fig = Figure(figsize=(1, 1))
    fig.add_subplot().plot([0, 1], [0, 1])
    return fig


def test_live_chart_refreshes_every_interval_and_stops_at_the_deadline() -> None:
    fake = FakeTime()
    drawn: list[float] = []

    def draw() -> Figure:
        drawn.append(fake.now)
        return small_figure()

    shown: list[bytes] = []
    chart = LiveChart(
        draw,
        every_s=2.0,
        duration_s=7.0,
        sleep=fake.sleep,
        clock=fake.clock,
        show=lambda image: shown.append(image.data),
    )
    assert chart.run() is None  # nothing for the cell to display a second time
    assert drawn == [0.0, 2.0, 4.0, 6.0]
    assert chart.frames == 4 and isinstance(chart.last, Figure)
    assert len(shown) == 4 and all(png.startswith(b"\x89PNG") for png in shown) and chart.png == shown[-1]


def test_outside_a_kernel_it_still_draws_every_time() -> None:
    fake = FakeTime()
    chart = LiveChart(small_figure, every_s=1.0, duration_s=2.5, sleep=fake.sleep, clock=fake.clock)
    chart.run()
    assert chart.frames == 3 and chart.png.startswith(b"\x89PNG")


def test_zero_duration_draws_once() -> None:
    fake = FakeTime()
    chart = LiveChart(small_figure, every_s=1.0, duration_s=0.0, sleep=fake.sleep, clock=fake.clock, show=print)
    chart.run()
    assert chart.frames == 1 and fake.sleeps == []


def test_figure_png_is_a_png() -> None:
    assert figure_png(small_figure()).startswith(b"\x89PNG")
