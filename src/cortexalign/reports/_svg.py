"""Small inline SVG charts: lines with bands and scatter plots, each point with a hover title.

Hand-written rather than matplotlib's SVG so that every label goes through one escape
(``markupsafe.escape``) and every point carries its value (``data-x``/``data-y``) and a
``<title>`` the browser shows on hover. Non-finite values are left out (a gap in the line).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from markupsafe import Markup, escape

__all__ = ["Series", "line_svg", "scatter_svg", "PALETTE"]

#: Colour-blind-friendly cycle (Okabe & Ito 2008, then greys).
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442",
           "#000000", "#777777", "#AAAAAA")
_W, _H, _L, _R, _T, _B = 440, 290, 58, 12, 26, 46  # size and margins in px


@dataclass
class Series:
    """One line (or point set): x, y, optional interval lo/hi, and a hover text per point.

    ``group``: series of one group share a colour (a model's train and test curves);
    ``dashed``: a dashed line (the held-out one of such a pair).
    """

    label: str
    x: Sequence[float]
    y: Sequence[float]
    lo: Sequence[float] | None = None
    hi: Sequence[float] | None = None
    tips: Sequence[str] = field(default_factory=list)
    group: str | None = None
    dashed: bool = False


def _ok(*v: float | None) -> bool:
    return all(a is not None and isinstance(a, int | float) and math.isfinite(a) for a in v)


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.ceil(lo / step) * step
    return [start + i * step for i in range(int((hi - start) / step + 1e-9) + 1)]


def _clip(text: str, n: int) -> Markup:
    """Escaped ``text`` cut to ``n`` characters (the whole text stays in a hover title)."""
    if len(text) <= n:
        return escape(text)
    return Markup(f"<tspan>{escape(text[:n - 1])}…<title>{escape(text)}</title></tspan>")


def _si(v: float) -> str:
    """1.5e9 -> '1.5G' (axis labels of counts)."""
    for div, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= div:
            return f"{v / div:g}{suffix}"
    return f"{v:g}"


def _log_ticks(lo_exp: float, hi_exp: float) -> list[tuple[float, str]]:
    """Ticks at 1, 2, 5 x 10^k (or only 10^k over many decades) between 10^lo_exp, 10^hi_exp."""
    mults = (1,) if hi_exp - lo_exp > 3 else (1, 2, 5)
    out = [(m * 10.0 ** e, _si(m * 10.0 ** e)) for e in range(math.floor(lo_exp), math.ceil(hi_exp) + 1)
           for m in mults if lo_exp <= math.log10(m * 10.0 ** e) <= hi_exp]
    return out


def _fmt(v: float) -> str:
    return f"{v:.3g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.1e}"


class _Frame:
    """Maps data to pixels and draws the axes."""

    def __init__(self, xs: list[float], ys: list[float], log_x: bool):
        self.log_x = log_x
        tx = [self._tx(x) for x in xs] or [0.0, 1.0]
        self.x0, self.x1 = min(tx), max(tx)
        if self.x1 == self.x0:
            self.x0, self.x1 = self.x0 - 0.5, self.x1 + 0.5
        pad = 0.04 * (self.x1 - self.x0)
        self.x0, self.x1 = self.x0 - pad, self.x1 + pad
        ys = ys or [0.0, 1.0]
        self.y0, self.y1 = min(ys), max(ys)
        if self.y1 == self.y0:
            self.y0, self.y1 = self.y0 - 0.5, self.y1 + 0.5
        pad = 0.06 * (self.y1 - self.y0)
        self.y0, self.y1 = self.y0 - pad, self.y1 + pad

    def _tx(self, x: float) -> float:
        return math.log10(x) if self.log_x else x

    def px(self, x: float) -> float:
        return _L + (self._tx(x) - self.x0) / (self.x1 - self.x0) * (_W - _L - _R)

    def py(self, y: float) -> float:
        return _H - _B - (y - self.y0) / (self.y1 - self.y0) * (_H - _T - _B)

    def axes(self, x_label: str, y_label: str, x_ticks: Sequence[tuple[float, str]] | None) -> list[str]:
        out = [f'<rect class="plot" x="{_L}" y="{_T}" width="{_W - _L - _R}" '
               f'height="{_H - _T - _B}" fill="none" stroke="#999"/>']
        for v in _ticks(self.y0, self.y1):
            y = self.py(v)
            out.append(f'<line x1="{_L}" x2="{_W - _R}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/>'
                       f'<text x="{_L - 4}" y="{y + 4:.1f}" text-anchor="end">{_fmt(v)}</text>')
        if x_ticks is None:
            if self.log_x:
                x_ticks = _log_ticks(self.x0, self.x1)
            else:
                x_ticks = [(v, _fmt(v)) for v in _ticks(self.x0, self.x1)]
        for v, lab in x_ticks:
            x = self.px(v)
            out.append(f'<text x="{x:.1f}" y="{_H - _B + 14}" text-anchor="middle">{_clip(lab, 18)}</text>')
        out.append(f'<text x="{(_L + _W - _R) / 2}" y="{_H - _B + 30}" text-anchor="middle">'
                   f'{_clip(x_label, 60)}</text>')
        out.append(f'<text transform="translate(14 {(_T + _H - _B) / 2}) rotate(-90)" '
                   f'text-anchor="middle">{_clip(y_label, 45)}</text>')
        return out


def _svg(body: list[str], title: str, legend: list[tuple[str, str]]) -> Markup:
    rows = len(legend)
    height = _H + 16 * rows
    head = (f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {_W} {height}" '
            f'width="{_W}" height="{height}" role="img" aria-label="{escape(title)}">'
            f'<text class="ctitle" x="{_W / 2}" y="16" text-anchor="middle">{_clip(title, 52)}</text>')
    leg = [f'<g class="legend"><rect x="{_L}" y="{_H + 16 * i - 9}" width="12" height="8" '
           f'fill="{c}"/><text x="{_L + 18}" y="{_H + 16 * i - 1}">{_clip(lab, 60)}</text></g>'
           for i, (lab, c) in enumerate(legend)]
    return Markup(head + "".join(body) + "".join(leg) + "</svg>")


def line_svg(series: Sequence[Series], *, title: str, x_label: str, y_label: str,
             band: tuple[float, float, str] | None = None,
             x_ticks: Sequence[tuple[float, str]] | None = None, log_x: bool = False) -> Markup:
    """Lines with shaded intervals; ``band`` = (low, high, label) draws a grey horizontal band."""
    xs = [x for s in series for x, y in zip(s.x, s.y, strict=True) if _ok(x, y)]
    ys = [v for s in series for arr in (s.y, s.lo or [], s.hi or []) for v in arr if _ok(v)]
    if band is not None and _ok(band[0], band[1]):
        ys += [band[0], band[1]]
    fr = _Frame(xs, ys, log_x)
    body = fr.axes(x_label, y_label, x_ticks)
    legend = []
    if band is not None and _ok(band[0], band[1]):
        y_hi, y_lo = fr.py(band[1]), fr.py(band[0])
        body.insert(0, f'<rect class="ceiling" x="{_L}" y="{y_hi:.1f}" width="{_W - _L - _R}" '
                       f'height="{max(y_lo - y_hi, 1):.1f}" fill="#ddd" data-low="{band[0]!r}" '
                       f'data-high="{band[1]!r}"><title>{escape(band[2])}: {_fmt(band[0])} – '
                       f'{_fmt(band[1])}</title></rect>')
        legend.append((band[2], "#ddd"))
    groups = list(dict.fromkeys(s.group if s.group is not None else f"#{k}"
                                for k, s in enumerate(series)))
    for k, s in enumerate(series):
        color = PALETTE[groups.index(s.group if s.group is not None else f"#{k}") % len(PALETTE)]
        legend.append((s.label, color))
        dash = ' stroke-dasharray="5 3"' if s.dashed else ""
        tips = list(s.tips) or [""] * len(s.x)
        if s.lo is not None and s.hi is not None:
            pts = [(x, lo, hi) for x, lo, hi in zip(s.x, s.lo, s.hi, strict=True) if _ok(x, lo, hi)]
            if len(pts) > 1:
                poly = [f"{fr.px(x):.1f},{fr.py(hi):.1f}" for x, _, hi in pts] + \
                       [f"{fr.px(x):.1f},{fr.py(lo):.1f}" for x, lo, _ in reversed(pts)]
                body.append(f'<polygon class="ci" points="{" ".join(poly)}" fill="{color}" '
                            f'fill-opacity="0.18"/>')
        segment: list[str] = []
        for x, y in [*zip(s.x, s.y, strict=True), (None, None)]:
            if _ok(x, y):
                segment.append(f"{fr.px(x):.1f},{fr.py(y):.1f}")
                continue
            if len(segment) > 1:
                body.append(f'<polyline points="{" ".join(segment)}" fill="none" stroke="{color}" '
                            f'stroke-width="1.8"{dash}/>')
            segment = []
        for x, y, tip in zip(s.x, s.y, tips, strict=True):
            if _ok(x, y):
                body.append(f'<circle class="pt" cx="{fr.px(x):.1f}" cy="{fr.py(y):.1f}" r="3.5" '
                            f'fill="{color}" data-x="{x!r}" data-y="{y!r}"><title>{escape(tip)}'
                            f'</title></circle>')
    return _svg(body, title, legend)


def scatter_svg(points: Sequence[tuple[float, float, str, str]], *, title: str, x_label: str,
                y_label: str, log_x: bool = False) -> Markup:
    """One labelled point per (x, y, label, hover text); non-finite or (log) non-positive x dropped."""
    keep = [p for p in points if _ok(p[0], p[1]) and (not log_x or p[0] > 0)]
    fr = _Frame([p[0] for p in keep], [p[1] for p in keep], log_x)
    body = fr.axes(x_label, y_label, None)
    for k, (x, y, label, tip) in enumerate(keep):
        color = PALETTE[k % len(PALETTE)]
        cx, cy = fr.px(x), fr.py(y)
        body.append(f'<circle class="pt" cx="{cx:.1f}" cy="{cy:.1f}" r="5" fill="{color}" '
                    f'data-x="{x!r}" data-y="{y!r}"><title>{escape(tip)}</title></circle>')
        right = cx > (_L + _W - _R) / 2  # label on the inner side, so it stays in the frame
        body.append(f'<text x="{cx - 7 if right else cx + 7:.1f}" y="{cy - 7:.1f}" class="plabel" '
                    f'text-anchor="{"end" if right else "start"}">{_clip(label, 24)}</text>')
    return _svg(body, title, [])
