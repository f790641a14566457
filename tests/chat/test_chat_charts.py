"""Chat charts: PNG bytes, every line and bar named by department, a real Chinese font."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import matplotlib
import pytest
from matplotlib.ft2font import FT2Font
from matplotlib.text import Annotation

from clawfed.chat import charts
from clawfed.chat.charts import (
    BarValue,
    ChartError,
    CjkFontMissingError,
    LineSeries,
    compare_bar_chart,
    compare_bar_figure,
    figure_png,
    find_cjk_font,
    metric_line_chart,
    metric_line_figure,
)
from clawfed.core.errors import ConfigError

SERIES = (
    LineSeries("信贷部", ((1, 0.80), (2, 0.85), (3, 0.88))),
    LineSeries("合规部", ((1, 0.70), (2, 0.74))),
    LineSeries("审计部", ((2, 0.65), (3, 0.69))),
)


@pytest.fixture()
def fresh_font_cache() -> Iterator[None]:
    find_cjk_font.cache_clear()
    yield
    find_cjk_font.cache_clear()


def test_the_font_found_draws_chinese() -> None:
    font = FT2Font(str(find_cjk_font()))
    for char in "信贷部合规审计准确率轮次":
        assert font.get_char_index(ord(char)) != 0, char


def test_line_chart_names_every_department() -> None:
    fig = metric_line_figure("任务「fraud」各部门准确率", "准确率", "轮次", SERIES, percent=True)
    [ax] = fig.axes
    legend = ax.get_legend()
    assert legend is not None
    assert [t.get_text() for t in legend.get_texts()] == ["信贷部", "合规部", "审计部"]
    lines = ax.get_lines()
    assert [list(line.get_xdata()) for line in lines] == [[1, 2, 3], [1, 2], [2, 3]]
    notes = [c.get_text() for c in ax.get_children() if isinstance(c, Annotation)]
    assert notes == ["信贷部 88.0%", "合规部 74.0%", "审计部 69.0%"]
    assert ax.get_title() == "任务「fraud」各部门准确率"


def test_bar_chart_names_every_bar() -> None:
    bars = (BarValue("信贷部", 0.88), BarValue("合规部", 0.79))
    fig = compare_bar_figure("fraud@v3 各部门准确率对比", "准确率", bars, percent=True)
    [ax] = fig.axes
    assert [t.get_text() for t in ax.get_xticklabels()] == ["信贷部", "合规部"]
    values = [t.get_text() for t in ax.texts]
    assert values == ["88.0%", "79.0%"]
    heights = [p.get_height() for p in ax.patches]
    assert heights == pytest.approx([0.88, 0.79])


def test_charts_render_png_without_missing_glyph_warnings() -> None:
    # pytest turns warnings into errors: a font without Chinese glyphs would fail here
    line = metric_line_chart("信贷部损失", "损失", "轮次", SERIES[:1], percent=False)
    bar = compare_bar_chart("对比", "损失", (BarValue("质检部", 0.31),), percent=False)
    for png in (line, bar):
        assert png.startswith(b"\x89PNG\r\n\x1a\n")
        assert 5_000 < len(png) < 2 * 1024 * 1024


def test_a_font_without_chinese_is_noticed() -> None:
    dejavu = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    fig = compare_bar_figure("信贷部", "x", (BarValue("信贷部", 1.0),), percent=False, font=dejavu)
    with pytest.warns(UserWarning, match="missing from font"):
        figure_png(fig)


@pytest.mark.usefixtures("fresh_font_cache")
def test_missing_font_gives_the_install_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(charts.FONT_ENV, str(tmp_path / "none.ttf"))
    with pytest.raises(CjkFontMissingError, match="not a file"):
        find_cjk_font()
    find_cjk_font.cache_clear()
    monkeypatch.setenv(charts.FONT_ENV, "")
    monkeypatch.setattr(charts, "_fc_list", list)
    monkeypatch.setattr(charts, "findSystemFonts", lambda: [])
    with pytest.raises(CjkFontMissingError) as info:
        find_cjk_font()
    assert charts.FONT_INSTALL_HINT in str(info.value)
    assert isinstance(info.value, ConfigError)


@pytest.mark.usefixtures("fresh_font_cache")
def test_font_override_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    real = find_cjk_font()
    find_cjk_font.cache_clear()
    monkeypatch.setenv(charts.FONT_ENV, str(real))
    assert find_cjk_font() == real


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: LineSeries("", ((1, 0.5),)), "name its department"),
        (lambda: LineSeries("信贷部", ()), "no points"),
        (lambda: LineSeries("信贷部", ((1, math.nan),)), "finite"),
        (lambda: BarValue("信贷部", math.inf), "finite"),
        (lambda: metric_line_figure("t", "y", "x", (), percent=False), "1..24 series"),
        (lambda: compare_bar_figure("t", "y", (), percent=False), "1..24 bars"),
    ],
)
def test_bad_chart_values_are_refused(build: object, match: str) -> None:
    assert callable(build)
    with pytest.raises(ChartError, match=match):
        build()


def test_png_that_cannot_fit_is_refused() -> None:
    fig = metric_line_figure("t", "y", "x", SERIES, percent=True)
    small = figure_png(fig, max_bytes=2 * 1024 * 1024)
    with pytest.raises(ChartError, match="over 1000"):
        figure_png(fig, max_bytes=1000)
    assert len(small) > 1000
