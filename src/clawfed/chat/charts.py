"""Chart images for chat answers (PNG via matplotlib's Agg canvas), labelled by department."""

from __future__ import annotations

import io
import math
import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties, findSystemFonts
from matplotlib.ticker import MaxNLocator, PercentFormatter

from clawfed.chat.errors import ChatError
from clawfed.chat.wecom_messages import ROBOT_IMAGE_MAX_BYTES
from clawfed.core.errors import ConfigError

FONT_ENV = "CLAWFED_CJK_FONT"
"""Environment variable naming a font file to use instead of searching for one."""
FONT_INSTALL_HINT = "apt-get install -y --no-install-recommends fonts-wqy-microhei"
"""How to install a Chinese font on Debian / Ubuntu (``fonts-noto-cjk`` works too, larger)."""
MAX_SERIES = 24
_KNOWN_FONT_FILES = ("wqy", "notosanscjk", "notoserifcjk", "sourcehan", "droidsansfallback",
                     "simhei", "msyh", "pingfang", "heiti", "notosanssc")  # fmt: skip
_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf")  # fmt: skip


class ChartError(ChatError):
    """A chart cannot be drawn from the values given."""


class CjkFontMissingError(ChartError, ConfigError):
    """No font able to draw Chinese text is installed."""


def _fc_list() -> list[tuple[Path, str]]:
    exe = shutil.which("fc-list")
    if exe is None:
        return []
    try:
        done = subprocess.run(
            [exe, ":lang=zh", "file", "family"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    found: list[tuple[Path, str]] = []
    for line in done.stdout.splitlines():
        path, _, family = line.partition(":")
        if path.strip():
            found.append((Path(path.strip()), family.strip()))
    return found


def _rank(path: Path, family: str) -> tuple[int, int, str]:
    name = f"{path.name} {family}".lower()
    mono = "mono" in name
    sans = any(word in name for word in ("sans", "hei", "gothic"))
    return (int(mono), int(not sans), str(path))


@cache
def find_cjk_font() -> Path:
    """The font file charts draw Chinese text with.

    Looks at ``$CLAWFED_CJK_FONT``, then ``fc-list :lang=zh`` (sans-serif, proportional
    fonts first), then well-known CJK font files among the system fonts.

    Raises
    ------
    CjkFontMissingError
        When no such font is installed; the message says how to install one.
    """
    override = os.environ.get(FONT_ENV, "").strip()
    if override:
        path = Path(override)
        if not path.is_file():
            raise CjkFontMissingError(f"${FONT_ENV} names {override!r}, which is not a file")
        return path
    listed = sorted((c for c in _fc_list() if c[0].is_file()), key=lambda c: _rank(*c))
    if listed:
        return listed[0][0]
    for name in sorted(findSystemFonts()):
        squeezed = Path(name).name.lower().replace("-", "").replace("_", "")
        if any(token in squeezed for token in _KNOWN_FONT_FILES):
            return Path(name)
    raise CjkFontMissingError(
        "no Chinese font is installed, so charts cannot label departments; install one, "
        f"e.g. `{FONT_INSTALL_HINT}`, or set ${FONT_ENV} to a .ttf/.ttc/.otf file"
    )


@dataclass(frozen=True)
class LineSeries:
    """One department's metric value per round."""

    department: str
    points: tuple[tuple[int, float], ...]

    def __post_init__(self) -> None:
        if not self.department.strip():
            raise ChartError("every series must name its department")
        if not self.points:
            raise ChartError(f"series of {self.department} has no points")
        for x, y in self.points:
            if not math.isfinite(y):
                raise ChartError(f"{self.department}: value at round {x} must be finite, got {y}")


@dataclass(frozen=True)
class BarValue:
    """One department's value in a comparison."""

    department: str
    value: float

    def __post_init__(self) -> None:
        if not self.department.strip():
            raise ChartError("every bar must name its department")
        if not math.isfinite(self.value):
            raise ChartError(f"{self.department}: value must be finite, got {self.value}")


def _figure() -> Figure:
    fig = Figure(figsize=(8, 4.5), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _font(font: Path | None) -> FontProperties:
    return FontProperties(fname=str(font or find_cjk_font()))


def _value_text(value: float, percent: bool) -> str:
    return f"{value * 100:.1f}%" if percent else f"{value:.4g}"


def metric_line_figure(
    title: str,
    y_label: str,
    x_label: str,
    series: Sequence[LineSeries],
    *,
    percent: bool,
    font: Path | None = None,
) -> Figure:
    """A line per department: metric value (y) by round (x); legend and line ends name it."""
    if not 1 <= len(series) <= MAX_SERIES:
        raise ChartError(f"a line chart needs 1..{MAX_SERIES} series, got {len(series)}")
    fp = _font(font)
    fig = _figure()
    ax = fig.add_subplot()
    for i, s in enumerate(series):
        xs = [x for x, _ in s.points]
        ys = [y for _, y in s.points]
        color = _COLORS[i % len(_COLORS)]
        ax.plot(xs, ys, marker="o", color=color, label=s.department)
        ax.annotate(
            f"{s.department} {_value_text(ys[-1], percent)}",
            (xs[-1], ys[-1]),
            xytext=(6, 0),
            textcoords="offset points",
            va="center",
            color=color,
            fontproperties=fp,
        )
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if percent:
        ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
    ax.margins(x=0.15)
    ax.grid(alpha=0.3)
    ax.set_title(title, fontproperties=fp)
    ax.set_xlabel(x_label, fontproperties=fp)
    ax.set_ylabel(y_label, fontproperties=fp)
    ax.legend(prop=fp, loc="best")
    return fig


def compare_bar_figure(
    title: str,
    y_label: str,
    bars: Sequence[BarValue],
    *,
    percent: bool,
    font: Path | None = None,
) -> Figure:
    """A bar per department, named under the bar, with its value above it."""
    if not 1 <= len(bars) <= MAX_SERIES:
        raise ChartError(f"a bar chart needs 1..{MAX_SERIES} bars, got {len(bars)}")
    fp = _font(font)
    fig = _figure()
    ax = fig.add_subplot()
    positions = list(range(len(bars)))
    colors = [_COLORS[i % len(_COLORS)] for i in positions]
    drawn = ax.bar(positions, [b.value for b in bars], color=colors)
    ax.bar_label(drawn, labels=[_value_text(b.value, percent) for b in bars], padding=3)
    ax.set_xticks(positions, [b.department for b in bars])
    for label in ax.get_xticklabels():
        label.set_fontproperties(fp)
    if percent:
        ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
    ax.margins(y=0.15)
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(title, fontproperties=fp)
    ax.set_ylabel(y_label, fontproperties=fp)
    return fig


@dataclass(frozen=True)
class GroupBar:
    """One department's value for one group (e.g. a region) in a grouped comparison."""

    group: str
    department: str
    value: float

    def __post_init__(self) -> None:
        if not self.group.strip() or not self.department.strip():
            raise ChartError("every bar must name its group and its department")
        if not math.isfinite(self.value):
            raise ChartError(f"{self.group}/{self.department}: value must be finite")


def grouped_bar_figure(
    title: str,
    y_label: str,
    bars: Sequence[GroupBar],
    *,
    font: Path | None = None,
) -> Figure:
    """Bars side by side per group, one colour per department; each bar names its department.

    Every bar carries a label "<department> <value>" above (or below, for a negative value)
    it, so that no value is shown without its source; the legend repeats the colours.
    """
    if not 1 <= len(bars) <= MAX_SERIES * 2:
        raise ChartError(f"a grouped bar chart needs 1..{MAX_SERIES * 2} bars, got {len(bars)}")
    groups = list(dict.fromkeys(b.group for b in bars))
    depts = list(dict.fromkeys(b.department for b in bars))
    fp = _font(font)
    fig = _figure()
    ax = fig.add_subplot()
    width = 0.8 / len(depts)
    for j, dept in enumerate(depts):
        mine = [b for b in bars if b.department == dept]
        xs = [groups.index(b.group) - 0.4 + width * (j + 0.5) for b in mine]
        drawn = ax.bar(xs, [b.value for b in mine], width, color=_COLORS[j % len(_COLORS)],
                       label=dept)  # fmt: skip
        labels = ax.bar_label(drawn, labels=[f"{dept}\n{b.value:+.1f}" for b in mine], padding=2)
        for text in labels:
            text.set_fontproperties(fp)
            text.set_fontsize(8)
    ax.axhline(0.0, color="#444444", linewidth=0.8)
    ax.set_xticks(range(len(groups)), groups)
    for label in ax.get_xticklabels():
        label.set_fontproperties(fp)
    ax.margins(y=0.25)
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(title, fontproperties=fp)
    ax.set_ylabel(y_label, fontproperties=fp)
    ax.legend(prop=fp, loc="best")
    return fig


def figure_png(fig: Figure, max_bytes: int = ROBOT_IMAGE_MAX_BYTES) -> bytes:
    """Render a figure to PNG bytes, lowering the resolution until it fits ``max_bytes``."""
    dpi = float(fig.get_dpi())
    for _ in range(4):
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=dpi)
        data = buffer.getvalue()
        if len(data) <= max_bytes:
            return data
        dpi *= 0.7
    raise ChartError(f"chart PNG is {len(data)} bytes even at {dpi:.0f} dpi, over {max_bytes}")


def metric_line_chart(
    title: str,
    y_label: str,
    x_label: str,
    series: Sequence[LineSeries],
    *,
    percent: bool,
    font: Path | None = None,
) -> bytes:
    """PNG of :func:`metric_line_figure`."""
    return figure_png(
        metric_line_figure(title, y_label, x_label, series, percent=percent, font=font)
    )


def compare_bar_chart(
    title: str,
    y_label: str,
    bars: Sequence[BarValue],
    *,
    percent: bool,
    font: Path | None = None,
) -> bytes:
    """PNG of :func:`compare_bar_figure`."""
    return figure_png(compare_bar_figure(title, y_label, bars, percent=percent, font=font))


def grouped_bar_chart(
    title: str, y_label: str, bars: Sequence[GroupBar], *, font: Path | None = None
) -> bytes:
    """PNG of :func:`grouped_bar_figure`."""
    return figure_png(grouped_bar_figure(title, y_label, bars, font=font))
