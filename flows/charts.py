"""Line charts as PNG, for files beside the data and for the Prefect UI.

`line_chart(series, ...)` draws curves (one per name: (x, y) points) on shared axes with a legend,
with Pillow (a dependency of apache-beam already; no plotting library). `image_data_url(png)` is
the PNG as a `data:` URL: a Prefect image artifact shows any URL, and a `data:` URL needs no
server to host the file (the UI renders it in an `<img>`; tests/test_charts.py checks that it
renders in a real browser). Colours are fixed in order, so the same arms get the same colours run
after run.
"""

from __future__ import annotations

import base64
import io
import math

from PIL import Image, ImageDraw, ImageFont

# Colour-blind-safe (Okabe-Ito), in the order series are drawn.
COLOURS = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442",
           "#000000")
MARGIN = {"left": 70, "right": 20, "top": 40, "bottom": 50}


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About `count` round tick values (1, 2 or 5 times a power of ten apart) covering the
    range."""
    if not math.isfinite(low) or not math.isfinite(high):
        raise ValueError(f"cannot draw axis from {low} to {high}")
    if high <= low:
        high = low + (abs(low) or 1.0)
    raw = (high - low) / max(1, count)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.floor(low / step) * step
    ticks, value = [], first
    while value <= high + step * 1e-9:
        ticks.append(round(value, 12))
        value += step
    if ticks[-1] < high:
        ticks.append(round(value, 12))
    return ticks


def label(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 1000 or value == int(value) else f"{value:.3g}"


def line_chart(series: dict[str, list[tuple[float, float]]], *, title: str = "",
               x_label: str = "", y_label: str = "", size: tuple[int, int] = (800, 450)
               ) -> bytes:
    """A PNG of the curves, one per name, drawn in the order given."""
    points = [p for curve in series.values() for p in curve]
    if not points:
        raise ValueError("nothing to draw: every series is empty")
    width, height = size
    font = ImageFont.load_default()
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    xs = nice_ticks(min(p[0] for p in points), max(p[0] for p in points))
    ys = nice_ticks(min(p[1] for p in points), max(p[1] for p in points))
    left, right = MARGIN["left"], width - MARGIN["right"]
    top, bottom = MARGIN["top"], height - MARGIN["bottom"]

    def at(x: float, y: float) -> tuple[float, float]:
        return (left + (x - xs[0]) / (xs[-1] - xs[0]) * (right - left),
                bottom - (y - ys[0]) / (ys[-1] - ys[0]) * (bottom - top))

    for x in xs:  # grid and tick labels
        px = at(x, ys[0])[0]
        draw.line([(px, top), (px, bottom)], fill="#e6e6e6")
        draw.text((px, bottom + 6), label(x), fill="#333333", font=font, anchor="ma")
    for y in ys:
        py = at(xs[0], y)[1]
        draw.line([(left, py), (right, py)], fill="#e6e6e6")
        draw.text((left - 6, py), label(y), fill="#333333", font=font, anchor="rm")
    draw.rectangle([left, top, right, bottom], outline="#999999")
    draw.text((width / 2, 12), title, fill="black", font=font, anchor="ma")
    draw.text(((left + right) / 2, height - 16), x_label, fill="black", font=font, anchor="ma")
    draw.text((8, top - 24), y_label, fill="black", font=font)
    for k, (name, curve) in enumerate(series.items()):
        colour = COLOURS[k % len(COLOURS)]
        line = [at(x, y) for x, y in sorted(curve)]
        if len(line) > 1:
            draw.line(line, fill=colour, width=2)
        for px, py in line:
            draw.ellipse([px - 2, py - 2, px + 2, py + 2], fill=colour)
        ly = top + 8 + 14 * k  # legend, top right
        draw.line([(right - 150, ly), (right - 130, ly)], fill=colour, width=3)
        draw.text((right - 125, ly), name, fill="black", font=font, anchor="lm")
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()


def image_data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")
