"""Renderers of a trend ``Chart``: PNG (matplotlib, Agg) and a self-contained interactive HTML page.

The HTML draws its own SVG and carries a few lines of JavaScript for hover tooltips: no CDN, no fonts,
no request leaves the page, so it opens offline and inside locked-down networks.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime
from html import escape

from fhirlake.analytics.trends import Chart, Marker

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SERIES_COLOURS = ("#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#17becf", "#bcbd22")
MARKER_COLOURS = {"condition": "#d62728", "medication": "#ff7f0e"}
MARKER_NAMES = {"condition": "condition onset", "medication": "medication start"}


def render_png(chart: Chart, width: int = 1000, height: int = 500, dpi: int = 100) -> bytes:
    """A ``width`` x ``height`` pixel PNG. matplotlib is imported here: only chart requests pay for it."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
    from matplotlib.figure import Figure  # no pyplot: no global figure state shared between threads

    figure = Figure(figsize=(width / dpi, height / dpi), dpi=dpi)
    axes = figure.add_subplot()
    for number, series in enumerate(chart.series):
        if series.points:
            axes.plot(
                [p.at for p in series.points],
                [p.value for p in series.points],
                marker="o",
                markersize=4,
                color=SERIES_COLOURS[number % len(SERIES_COLOURS)],
                label=series.name,
            )
    seen: set[str] = set()
    for marker in chart.markers:
        axes.axvline(
            marker.at,
            color=MARKER_COLOURS[marker.kind],
            linestyle="--" if marker.kind == "condition" else ":",
            linewidth=1,
            alpha=0.7,
            label=None if marker.kind in seen else MARKER_NAMES[marker.kind],
        )
        seen.add(marker.kind)
        # Which condition (top) or medication (bottom): a small vertical label along the line.
        on_top = marker.kind == "condition"
        axes.annotate(
            marker.label if len(marker.label) <= 32 else marker.label[:31] + "…",
            xy=(marker.at, 0.99 if on_top else 0.01),
            xycoords=("data", "axes fraction"),
            rotation=90,
            fontsize="x-small",
            color=MARKER_COLOURS[marker.kind],
            ha="right",
            va="top" if on_top else "bottom",
        )
    if chart.empty and not chart.markers:
        axes.text(0.5, 0.5, "no data", ha="center", va="center", transform=axes.transAxes)
    else:
        locator = AutoDateLocator()
        axes.xaxis.set_major_locator(locator)
        axes.xaxis.set_major_formatter(ConciseDateFormatter(locator))
        axes.legend(loc="best", fontsize="small")
    axes.set_title(chart.title + (f"\n{chart.subtitle}" if chart.subtitle else ""), fontsize="medium")
    axes.set_ylabel(chart.y_label)
    axes.grid(True, alpha=0.3)
    figure.tight_layout()
    out = io.BytesIO()
    figure.savefig(out, format="png", dpi=dpi)  # no bbox_inches="tight": it would change the pixel size
    return out.getvalue()


# -- HTML -------------------------------------------------------------------------------------------------
_WIDTH, _HEIGHT = 960, 420
_LEFT, _RIGHT, _TOP, _BOTTOM = 70, 20, 20, 50

_SCRIPT = """
(function () {
  var tip = document.getElementById("tip");
  document.querySelectorAll("[data-tip]").forEach(function (node) {
    node.addEventListener("mouseenter", function () { tip.textContent = node.getAttribute("data-tip");
      tip.style.display = "block"; });
    node.addEventListener("mousemove", function (e) { tip.style.left = (e.pageX + 12) + "px";
      tip.style.top = (e.pageY + 12) + "px"; });
    node.addEventListener("mouseleave", function () { tip.style.display = "none"; });
  });
})();
"""

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.2em; margin: 0; } p.sub { color: #666; margin: .2em 0 1em; }
svg text { font-size: 11px; fill: #444; } .grid { stroke: #ddd; } .axis { stroke: #888; }
#tip { position: absolute; display: none; background: #222; color: #fff; padding: 4px 8px;
       border-radius: 4px; font-size: 12px; pointer-events: none; white-space: pre; }
.legend span { margin-right: 1.2em; font-size: 13px; } .swatch { display: inline-block; width: 12px;
       height: 12px; margin-right: 4px; vertical-align: -1px; }
"""


def render_html(chart: Chart) -> str:
    """One HTML document: an inline SVG chart with a tooltip on every point and event marker."""
    times = [p.at for s in chart.series for p in s.points] + [m.at for m in chart.markers]
    values = [p.value for s in chart.series for p in s.points]
    svg = [f'<svg viewBox="0 0 {_WIDTH} {_HEIGHT}" width="{_WIDTH}" height="{_HEIGHT}" role="img">']
    if not times:
        svg.append(f'<text x="{_WIDTH / 2}" y="{_HEIGHT / 2}" text-anchor="middle">no data</text>')
    else:
        x_of, ticks_x = _time_scale(min(times), max(times))
        y_of, ticks_y = _value_scale(min(values, default=0.0), max(values, default=1.0))
        svg += _axes(x_of, ticks_x, y_of, ticks_y, chart.y_label)
        svg += [_marker(m, x_of) for m in chart.markers]
        for number, series in enumerate(chart.series):
            colour = SERIES_COLOURS[number % len(SERIES_COLOURS)]
            path = " ".join(f"{x_of(p.at):.1f},{y_of(p.value):.1f}" for p in series.points)
            svg.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="1.5"/>')
            for point in series.points:
                tip = (
                    f"{series.name}\n{point.at:%Y-%m-%d %H:%M}  {_number(point.value)} {series.unit}".rstrip()
                )
                if point.note and point.note != series.unit:
                    tip += f"\n{point.note}"
                svg.append(
                    f'<circle cx="{x_of(point.at):.1f}" cy="{y_of(point.value):.1f}" r="4" fill="{colour}" '
                    f'data-value="{point.value}" data-tip="{escape(tip)}">'
                    f"<title>{escape(tip)}</title></circle>"
                )
    svg.append("</svg>")
    legend = [
        f'<span><i class="swatch" style="background:{SERIES_COLOURS[n % len(SERIES_COLOURS)]}"></i>'
        f"{escape(s.name)}</span>"
        for n, s in enumerate(chart.series)
    ] + [
        f'<span><i class="swatch" style="background:{MARKER_COLOURS[kind]}"></i>{MARKER_NAMES[kind]}</span>'
        for kind in sorted({m.kind for m in chart.markers})
    ]
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>{escape(chart.title)}</title><style>{_STYLE}</style></head><body>",
            f"<h1>{escape(chart.title)}</h1>",
            f'<p class="sub">{escape(chart.subtitle)}</p>',
            f'<div class="legend">{"".join(legend)}</div>',
            *svg,
            '<div id="tip"></div>',
            f"<script>{_SCRIPT}</script>",
            "</body></html>",
        ]
    )


def _marker(marker: Marker, x_of) -> str:
    x = x_of(marker.at)
    tip = f"{MARKER_NAMES[marker.kind]}: {marker.label}\n{marker.at:%Y-%m-%d}"
    dash = "5,3" if marker.kind == "condition" else "2,3"
    return (
        f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{_TOP}" y2="{_HEIGHT - _BOTTOM}" '
        f'stroke="{MARKER_COLOURS[marker.kind]}" '
        f'stroke-dasharray="{dash}" stroke-width="6" stroke-opacity="0.35" data-kind="{marker.kind}" '
        f'data-tip="{escape(tip)}"><title>{escape(tip)}</title></line>'
    )


def _time_scale(start: datetime, end: datetime):
    low, high = start.timestamp(), end.timestamp()
    if high - low < 86400:
        low, high = low - 43200, high + 43200
    span = high - low

    def x_of(at: datetime) -> float:
        return _LEFT + (at.timestamp() - low) / span * (_WIDTH - _LEFT - _RIGHT)

    first, last = datetime.fromtimestamp(low, UTC).year, datetime.fromtimestamp(high, UTC).year
    step = max(1, (last - first) // 8 + 1)
    ticks = []
    for year in range(first, last + 2, step):
        at = datetime(year, 1, 1, tzinfo=start.tzinfo)
        if low <= at.timestamp() <= high:
            ticks.append((x_of(at), str(year)))
    if len(ticks) < 2:
        ticks = [(x_of(start), f"{start:%Y-%m-%d}"), (x_of(end), f"{end:%Y-%m-%d}")]
    return x_of, ticks


def _value_scale(low: float, high: float):
    if high - low < 1e-9:
        low, high = low - 1, high + 1
    pad = (high - low) * 0.08
    low, high = low - pad, high + pad

    def y_of(value: float) -> float:
        return _HEIGHT - _BOTTOM - (value - low) / (high - low) * (_HEIGHT - _TOP - _BOTTOM)

    ticks = [(y_of(low + (high - low) * i / 5), _number(low + (high - low) * i / 5)) for i in range(6)]
    return y_of, ticks


def _axes(x_of, ticks_x, y_of, ticks_y, y_label: str) -> list[str]:
    bottom, right = _HEIGHT - _BOTTOM, _WIDTH - _RIGHT
    parts = [
        f'<line class="axis" x1="{_LEFT}" x2="{right}" y1="{bottom}" y2="{bottom}"/>',
        f'<line class="axis" x1="{_LEFT}" x2="{_LEFT}" y1="{_TOP}" y2="{bottom}"/>',
        f'<text x="14" y="{(_TOP + bottom) / 2}" transform="rotate(-90 14 {(_TOP + bottom) / 2})" '
        f'text-anchor="middle">{escape(y_label)}</text>',
    ]
    for y, label in ticks_y:
        parts.append(f'<line class="grid" x1="{_LEFT}" x2="{right}" y1="{y:.1f}" y2="{y:.1f}"/>')
        parts.append(f'<text x="{_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{label}</text>')
    for x, label in ticks_x:
        parts.append(f'<text x="{x:.1f}" y="{bottom + 18}" text-anchor="middle">{escape(label)}</text>')
    return parts


def _number(value: float) -> str:
    return f"{value:.4g}" if abs(value) < 1e5 else f"{value:.3e}"
