"""Charts as inline SVG, drawn by matplotlib's SVG backend without a browser or a display.

Text is drawn as paths (``svg.fonttype = "path"``), so a chart looks the same on any machine and in print with no
font to load; ids are salted per chart (``svg.hashsalt``) so several charts live in one page; no date in the
metadata, so the same data gives the same SVG. ``trend_svg`` draws a KPI's monthly values against its target;
``bars_svg`` a horizontal bar per agency. Both return an ``<svg>`` element (no XML prolog) sized by its viewBox, to
be placed in the page as it is.
"""

from __future__ import annotations

import html
import io
import re

from transforms.reports import texts

INK, TARGET, GRID, MET, MISSED = "#1f4e79", "#c0392b", "#d5dbe3", "#2e7d32", "#c0392b"


def _rc(salt: str) -> dict:
    return {"svg.fonttype": "path", "svg.hashsalt": salt, "font.family": "DejaVu Sans", "font.size": 9,
            "axes.edgecolor": "#8a96a3", "axes.spines.top": False, "axes.spines.right": False}


def _svg(fig, label: str) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None}, bbox_inches="tight", pad_inches=0.05)
    svg = buf.getvalue()
    svg = svg[svg.index("<svg"):]
    # sized by the page: keep the viewBox, drop the fixed width/height; a title for screen readers
    svg = re.sub(r'<svg([^>]*?) width="[^"]*" height="[^"]*"', r'<svg\1', svg, count=1)
    title = html.escape(label, quote=True)
    return svg.replace(">", f' class="chart" role="img" aria-label="{title}"><title>{title}</title>', 1)


def _percent_axis(ax, lang: str) -> None:
    from matplotlib.ticker import FuncFormatter

    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: texts.percent(v, 0, lang)))


def trend_svg(key: str, label: str, months: list[str], values: list[float | None], targets: list[float | None],
              *, unit: str = "rate", lang: str = "vi") -> str:
    """One KPI by month: its value (line with points) and its target (dashed); a gap where a month has no value.
    ``months`` are labels such as ``11/2025``."""
    from matplotlib import rc_context
    from matplotlib.figure import Figure

    with rc_context(_rc(key)):
        fig = Figure(figsize=(4.6, 2.1))
        ax = fig.add_subplot()
        x = list(range(len(months)))
        ys = [float("nan") if v is None else v for v in values]
        ax.plot(x, ys, color=INK, marker="o", markersize=3.5, linewidth=1.8, label=texts.t("common.value", lang))
        tg = [float("nan") if v is None else v for v in targets]
        if any(v == v for v in tg):
            ax.plot(x, tg, color=TARGET, linestyle="--", linewidth=1.2, label=texts.t("common.target", lang))
        if unit == "rate":
            ax.set_ylim(0, 1.05)
            _percent_axis(ax, lang)
        step = max(1, len(months) // 6)
        ax.set_xticks(x[::step], months[::step])
        ax.grid(axis="y", color=GRID, linewidth=0.6)
        ax.set_title(label, fontsize=9.5, loc="left", color="#1d2733")
        return _svg(fig, label)


def bars_svg(key: str, label: str, names: list[str], values: list[float | None], target: float | None,
             *, lang: str = "vi") -> str:
    """A horizontal bar per agency (rates), green when at or above the target, red below, grey without a target;
    the target as a dashed line."""
    from matplotlib import rc_context
    from matplotlib.figure import Figure

    with rc_context(_rc(key)):
        fig = Figure(figsize=(6.4, 0.7 + 0.3 * max(1, len(names))))
        ax = fig.add_subplot()
        vals = [0.0 if v is None else v for v in values]
        colours = ["#9aa5b1" if target is None or v is None else MET if v >= target else MISSED for v in values]
        y = list(range(len(names)))[::-1]
        ax.barh(y, vals, color=colours, height=0.62)
        ax.set_yticks(y, names)
        for yi, v in zip(y, values):
            ax.text((v or 0) + 0.01, yi, texts.percent(v, 1, lang, "—"), va="center", fontsize=7.5)
        if target is not None:
            ax.axvline(target, color=TARGET, linestyle="--", linewidth=1.1)
        ax.set_xlim(0, 1.12)
        _percent_axis_x(ax, lang)
        ax.grid(axis="x", color=GRID, linewidth=0.6)
        ax.set_title(label, fontsize=9.5, loc="left", color="#1d2733")
        return _svg(fig, label)


def _percent_axis_x(ax, lang: str) -> None:
    from matplotlib.ticker import FuncFormatter

    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: texts.percent(v, 0, lang)))
