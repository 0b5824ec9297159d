"""Drawing a shapes-world scene with PIL.

The spec fixes what is drawn and leaves the look open: the exact colour within a name, the
background tint, the noise, the edge anti-aliasing and the star's proportions. Each image
draws those at random within the spec so that models trained here do not learn one
renderer's habits and work on any faithful rendering.
"""

import colorsys
import math

import numpy as np
from PIL import Image, ImageDraw

from training.data.shapes_scene import (
    BASE_COLORS,
    CANVAS_SIZE,
    COLOR_JITTER,
    MAX_ROTATION_DEGREES,
    ROTATING_SHAPES,
    Box,
    WorldObject,
)

MAX_NOISE_SIGMA = 6.0
# Supersampling factors (1 = aliased edges) and how often each is used.
SUPERSAMPLING = (1, 2, 4)
SUPERSAMPLING_WEIGHTS = (0.2, 0.4, 0.4)
STAR_INNER_RATIO = (0.38, 0.52)  # inner / outer radius; a regular pentagram is 0.382
STAR_POINTS = 5


def render_scene(objects: list[WorldObject], rng: np.random.Generator) -> Image.Image:
    """The RGB image of `objects` on a light background with Gaussian pixel noise."""
    scale = int(rng.choice(SUPERSAMPLING, p=SUPERSAMPLING_WEIGHTS))
    star_ratio = float(rng.uniform(*STAR_INNER_RATIO))
    image = Image.new("RGB", (CANVAS_SIZE * scale, CANVAS_SIZE * scale), _background(rng))
    draw = ImageDraw.Draw(image)
    for obj in objects:
        fill = _jittered(BASE_COLORS[obj.color], rng)
        angle = float(rng.uniform(-MAX_ROTATION_DEGREES, MAX_ROTATION_DEGREES))
        if obj.shape not in ROTATING_SHAPES:
            angle = 0.0
        if obj.shape == "circle":
            x, y, w, h = obj.box
            corners = (x * scale, y * scale, (x + w) * scale - 1, (y + h) * scale - 1)
            draw.ellipse(corners, fill=fill)
        else:
            draw.polygon(_to_pixels(_outline(obj, angle, star_ratio), obj.box, scale), fill=fill)
    if scale > 1:
        image = image.reduce(scale)  # box filter: each pixel averages its scale x scale block
    return _add_noise(image, float(rng.uniform(0.0, MAX_NOISE_SIGMA)), rng)


def _background(rng: np.random.Generator) -> tuple[int, int, int]:
    """A light grey or a pastel. Every channel stays >= 175 while every object colour has a
    channel <= 80, so a background can never be mistaken for an object colour."""
    if rng.random() < 0.4:
        level = int(rng.integers(200, 246))
        return level, level, level
    hue, saturation, value = rng.random(), rng.uniform(0.08, 0.25), rng.uniform(0.92, 1.0)
    r, g, b = colorsys.hsv_to_rgb(hue, saturation, value)
    return round(r * 255), round(g * 255), round(b * 255)


def _jittered(base: tuple[int, int, int], rng: np.random.Generator) -> tuple[int, int, int]:
    jitter = rng.integers(-COLOR_JITTER, COLOR_JITTER + 1, size=3)
    r, g, b = (int(np.clip(c + j, 0, 255)) for c, j in zip(base, jitter, strict=True))
    return r, g, b


def _outline(obj: WorldObject, angle: float, star_ratio: float) -> list[tuple[float, float]]:
    """Polygon of a square, triangle or star that fills its box in continuous coordinates."""
    if obj.shape == "triangle":  # points up: apex at the top middle, base on the bottom edge
        unit = [(0.0, -1.0), (1.0, 1.0), (-1.0, 1.0)]
    elif obj.shape == "square":
        unit = [(-1.0, -1.0), (1.0, -1.0), (1.0, 1.0), (-1.0, 1.0)]
    else:
        unit = [
            (
                radius * math.cos(math.pi * (k / STAR_POINTS - 0.5)),
                radius * math.sin(math.pi * (k / STAR_POINTS - 0.5)),
            )
            for k, radius in enumerate([1.0, star_ratio] * STAR_POINTS)
        ]
    cos, sin = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    turned = [(u * cos - v * sin, u * sin + v * cos) for u, v in unit]
    xs, ys = [p[0] for p in turned], [p[1] for p in turned]
    x, y, w, h = obj.box
    # Scale the rotated outline so its larger extent equals the box side, centred in the box.
    scale = min(w / (max(xs) - min(xs)), h / (max(ys) - min(ys)))
    mid_u, mid_v = (max(xs) + min(xs)) / 2, (max(ys) + min(ys)) / 2
    return [(x + w / 2 + (u - mid_u) * scale, y + h / 2 + (v - mid_v) * scale) for u, v in turned]


def _to_pixels(
    outline: list[tuple[float, float]], box: Box, scale: int
) -> list[tuple[float, float]]:
    """Continuous outline -> vertices on the scaled canvas that PIL fills inside the box.

    PIL truncates vertices to whole pixels and fills inclusively, so the box [x, x + w] maps
    onto pixels x * scale .. (x + w) * scale - 1 (as the ellipse's corners do), clamped so
    that rounding error can never put a vertex one pixel outside.
    """
    x, y, w, h = box
    left, top, right, bottom = x * scale, y * scale, (x + w) * scale - 1, (y + h) * scale - 1
    fit_x, fit_y = (right - left) / w, (bottom - top) / h
    return [
        (
            min(max(left + (u - x) * fit_x, left), right),
            min(max(top + (v - y) * fit_y, top), bottom),
        )
        for u, v in outline
    ]


def _add_noise(image: Image.Image, sigma: float, rng: np.random.Generator) -> Image.Image:
    pixels = rng.standard_normal((CANVAS_SIZE, CANVAS_SIZE, 3), dtype=np.float32)  # (H, W, 3)
    pixels *= sigma
    pixels += np.asarray(image, dtype=np.float32)
    np.rint(pixels, out=pixels)  # in place: this runs once per image, 10,000 times a data set
    np.clip(pixels, 0, 255, out=pixels)
    return Image.fromarray(pixels.astype(np.uint8), "RGB")
