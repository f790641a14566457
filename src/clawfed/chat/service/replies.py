"""What a chat answer is: text to send now, or a chart to draw and send later."""

from __future__ import annotations

from dataclasses import dataclass

from clawfed.chat.charts import (
    BarValue,
    GroupBar,
    LineSeries,
    compare_bar_chart,
    grouped_bar_chart,
    metric_line_chart,
)
from clawfed.chat.nlu.lang import Lang
from clawfed.chat.service.views import t


def ack(lang: Lang) -> str:
    """The immediate reply to a question answered later."""
    return t(lang, "收到，正在计算…", "Got it, working on it…")


@dataclass(frozen=True)
class TextAnswer:
    """An answer ready now."""

    text: str


@dataclass(frozen=True)
class LineChart:
    """Metric by round, a line per department."""

    title: str
    y_label: str
    x_label: str
    series: tuple[LineSeries, ...]
    percent: bool

    def render(self) -> bytes:
        """The chart as PNG bytes."""
        return metric_line_chart(
            self.title, self.y_label, self.x_label, self.series, percent=self.percent
        )


@dataclass(frozen=True)
class BarChart:
    """Departments side by side on one metric."""

    title: str
    y_label: str
    bars: tuple[BarValue, ...]
    percent: bool

    def render(self) -> bytes:
        """The chart as PNG bytes."""
        return compare_bar_chart(self.title, self.y_label, self.bars, percent=self.percent)


@dataclass(frozen=True)
class GroupedBarChart:
    """Groups (e.g. regions) side by side, a bar per department labelled with its name."""

    title: str
    y_label: str
    bars: tuple[GroupBar, ...]

    def render(self) -> bytes:
        """The chart as PNG bytes."""
        return grouped_bar_chart(self.title, self.y_label, self.bars)


@dataclass(frozen=True)
class ChartAnswer:
    """An answer that needs a chart: ``ack`` goes back at once, the image and ``caption`` later."""

    ack: str
    chart: LineChart | BarChart | GroupedBarChart
    caption: str
    lang: Lang


Answer = TextAnswer | ChartAnswer
