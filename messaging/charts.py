"""Small server-rendered SVG charts for the reports: no JavaScript, no CDN, nothing to vendor.

Each function returns a self-contained ``<svg>`` (escaped labels, sizes in a viewBox so it scales
with the page) marked safe for templates.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

PALETTE = ["#417690", "#e08a2c", "#5b9a45", "#b54d4d", "#7d5ba6", "#8c8c8c"]
_FONT = 'font-family="sans-serif" font-size="11"'


def _nice_max(value: float) -> float:
    """A round upper bound for an axis (1, 2, 5 x 10^n)."""
    if value <= 0:
        return 1
    exponent = math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        bound = step * 10**exponent
        if bound >= value:
            return float(bound)
    return float(10 ** (exponent + 1))


def _number(value: float) -> str:
    return (
        f"{value:,.0f}".replace(",", " ")
        if value >= 1000 or value == int(value)
        else f"{value:.2g}"
    )


def _open(width: int, height: int, title: str) -> list[str]:
    t = escape(title)
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="100%" role="img" aria-label="{t}" class="lichno-chart">',
        f"<title>{t}</title>",
    ]


def _empty(width: int, height: int, title: str, note: str) -> SafeString:
    parts = _open(width, height, title)
    parts.append(
        f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" {_FONT} '
        f'fill="#888">{escape(note)}</text></svg>'
    )
    return mark_safe("".join(parts))  # noqa: S308 - every text above is escaped


def line_chart(
    labels: Sequence[str],
    series: Sequence[tuple[str, Sequence[float]]],
    *,
    title: str,
    width: int = 720,
    height: int = 240,
    empty: str = "—",
) -> SafeString:
    """Lines over a shared x axis (days), one colour per series, with a legend."""
    if not labels or not series:
        return _empty(width, height, title, empty)
    left, right, top, bottom = 64, 12, 28, 36
    plot_w, plot_h = width - left - right, height - top - bottom
    top_value = _nice_max(max((max(values, default=0) for _n, values in series), default=0))
    n = len(labels)

    def x(i: int) -> float:
        return left + (plot_w * i / (n - 1) if n > 1 else plot_w / 2)

    def y(v: float) -> float:
        return top + plot_h - plot_h * v / top_value

    parts = _open(width, height, title)
    for k in range(5):  # grid and y labels
        v = top_value * k / 4
        parts.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y(v):.1f}" y2="{y(v):.1f}" '
            f'stroke="#ddd" stroke-width="1"/>'
            f'<text x="{left - 6}" y="{y(v) + 4:.1f}" text-anchor="end" {_FONT} fill="#666">'
            f"{_number(v)}</text>"
        )
    step = max(1, math.ceil(n / 8))
    for i in range(0, n, step):  # x labels, at most about eight
        parts.append(
            f'<text x="{x(i):.1f}" y="{height - bottom + 16}" text-anchor="middle" {_FONT} '
            f'fill="#666">{escape(labels[i])}</text>'
        )
    for s, (name, values) in enumerate(series):
        colour = PALETTE[s % len(PALETTE)]
        points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(values))
        parts.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{points}"/>'
        )
        if n <= 40:
            parts.extend(
                f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="2.5" fill="{colour}">'
                f"<title>{escape(labels[i])}: {escape(name)} {_number(v)}</title></circle>"
                for i, v in enumerate(values)
            )
        lx = left + s * 160
        parts.append(
            f'<rect x="{lx}" y="8" width="12" height="12" fill="{colour}"/>'
            f'<text x="{lx + 16}" y="18" {_FONT}>{escape(name)}</text>'
        )
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - every text above is escaped


def bar_chart(
    items: Sequence[tuple[str, float]],
    *,
    title: str,
    width: int = 480,
    bar: int = 22,
    empty: str = "—",
) -> SafeString:
    """Horizontal bars with their values (a funnel: each bar's share of the first)."""
    if not items:
        return _empty(width, 60, title, empty)
    label_w, gap, top = 120, 6, 8
    height = top * 2 + len(items) * (bar + gap)
    top_value = max((v for _l, v in items), default=0) or 1
    first = items[0][1]
    plot_w = width - label_w - 90
    parts = _open(width, height, title)
    for i, (label, value) in enumerate(items):
        y = top + i * (bar + gap)
        w = max(1.0, plot_w * value / top_value) if value else 0
        share = f" ({100 * value / first:.0f}%)" if first and i else ""
        parts.append(
            f'<text x="{label_w - 6}" y="{y + bar * 0.7:.1f}" text-anchor="end" {_FONT}>'
            f"{escape(label)}</text>"
            f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{bar}" '
            f'fill="{PALETTE[0]}"/>'
            f'<text x="{label_w + w + 6:.1f}" y="{y + bar * 0.7:.1f}" {_FONT}>'
            f"{_number(value)}{share}</text>"
        )
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - every text above is escaped


def rate_chart(
    items: Sequence[tuple[str, float, float, float]],
    *,
    title: str,
    width: int = 480,
    bar: int = 22,
    empty: str = "—",
) -> SafeString:
    """Conversion rates (fractions) as bars with their 95% interval as a whisker."""
    if not items:
        return _empty(width, 60, title, empty)
    label_w, gap, top = 120, 6, 8
    height = top * 2 + len(items) * (bar + gap)
    top_value = _nice_max(max(max(r, hi) for _l, r, _lo, hi in items) * 100) / 100
    plot_w = width - label_w - 70

    def x(v: float) -> float:
        return label_w + plot_w * min(max(v, 0), top_value) / top_value

    parts = _open(width, height, title)
    for i, (label, rate, low, high) in enumerate(items):
        y = top + i * (bar + gap)
        mid = y + bar / 2
        parts.append(
            f'<text x="{label_w - 6}" y="{y + bar * 0.7:.1f}" text-anchor="end" {_FONT}>'
            f"{escape(label)}</text>"
            f'<rect x="{label_w}" y="{y}" width="{x(rate) - label_w:.1f}" height="{bar}" '
            f'fill="{PALETTE[i % len(PALETTE)]}" fill-opacity="0.8"/>'
            f'<line x1="{x(low):.1f}" x2="{x(high):.1f}" y1="{mid}" y2="{mid}" '
            f'stroke="#222" stroke-width="1.5"/>'
            f'<text x="{max(x(rate), x(high)) + 6:.1f}" y="{y + bar * 0.7:.1f}" {_FONT}>'
            f"{100 * rate:.1f}%</text>"
        )
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - every text above is escaped
