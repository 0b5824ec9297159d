"""Pictures that probe a domain check: the shapes world drawn a little differently (which must
pass) and pictures that are not shapes scenes (which must not).

Shared by `benchmarks.domain` and the tests. The variations differ from the views the check
is fitted on (`training.domain.FIT_VIEWS`): sharpened and pixelated edges, stronger JPEG, a
screenshot in a window, so that passing them measures margin rather than memory.
"""

from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from training.domain import blocky, jpeg, noisier, resized

PROSE = "the quick brown fox jumps over the lazy dog while glimpse reads a page"
Variation = Callable[[Image.Image, np.random.Generator], Image.Image]


def screenshot(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """The image shown in a plain window: a title bar, a border and a margin, saved losslessly."""
    w, h = image.size
    pad, bar = int(rng.integers(4, 16)), int(rng.integers(18, 30))
    shot = Image.new("RGB", (w + 2 * pad, h + 2 * pad + bar), (236, 236, 236))
    draw = ImageDraw.Draw(shot)
    draw.rectangle((0, 0, shot.width - 1, bar), fill=(210, 210, 214))
    draw.text((8, bar // 2 - 5), "shapes.png", fill=(40, 40, 40))
    for k, colour in enumerate(((237, 106, 94), (245, 191, 79), (98, 197, 84))):
        draw.ellipse((shot.width - 18 * (k + 1), 6, shot.width - 18 * k - 8, 16), fill=colour)
    shot.paste(image, (pad, pad + bar))
    return shot


VARIATIONS: dict[str, Variation] = {
    "jpeg_q85": lambda im, rng: jpeg(im, 85),
    "jpeg_q70": lambda im, rng: jpeg(im, 70),
    "jpeg_q50": lambda im, rng: jpeg(im, 50),
    "resized_0.5": lambda im, rng: resized(im, 0.5),
    "resized_0.75_jpeg_q80": lambda im, rng: jpeg(resized(im, 0.75), 80),
    "resized_2.0": lambda im, rng: resized(im, 2.0),
    "noise_10": lambda im, rng: noisier(im, 10.0, rng),
    "soft_edges": lambda im, rng: im.filter(ImageFilter.GaussianBlur(0.8)),
    "sharpened": lambda im, rng: im.filter(ImageFilter.SHARPEN),
    "pixelated": lambda im, rng: blocky(im, 0.5),
    "screenshot": screenshot,
}


def skimage_photographs() -> dict[str, Image.Image]:
    """The pictures scikit-image ships (photographs, micrographs, scans), as RGB."""
    from skimage import data  # the test extra: only benchmarks and tests call this

    names = (
        "astronaut", "brick", "camera", "cat", "checkerboard", "clock", "coffee", "coins",
        "colorwheel", "grass", "gravel", "horse", "hubble_deep_field", "immunohistochemistry",
        "logo", "moon", "page", "retina", "rocket", "text", "microaneurysms", "cell",
    )  # fmt: skip
    pictures = {}
    for name in names:
        pixels = np.asarray(getattr(data, name)())
        if pixels.dtype == bool:
            pixels = pixels.astype(np.uint8) * 255
        pictures[name] = Image.fromarray(pixels.astype(np.uint8)).convert("RGB")
    return pictures


def made_pictures(seed: int = 0, size: int = 256) -> dict[str, Image.Image]:
    """Pictures that are not shapes scenes: noise, gradients, text, a desktop screenshot."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 255, size, dtype=np.float32)  # (size,)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)  # (size, size) each
    radial = np.hypot(yy - size / 2, xx - size / 2) / (size / 1.4) * 255
    arrays = {
        "uniform_noise": rng.integers(0, 256, (size, size, 3)),
        "grey_noise": np.repeat(rng.normal(128, 40, (size, size, 1)), 3, axis=2),
        "gradient": np.stack(
            [
                np.tile(ramp, (size, 1)),
                np.tile(ramp[:, None], (1, size)),
                np.full((size, size), 90.0),
            ],
            axis=2,
        ),  # fmt: skip
        "radial_gradient": np.stack([radial, 255 - radial, np.full_like(radial, 200)], axis=2),
        "stripes": np.repeat(((xx // 16) % 2 * 200 + 30)[..., None], 3, axis=2),
    }
    pictures = {
        name: Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), "RGB")
        for name, a in arrays.items()
    }
    pictures["text"] = _text_page(size)
    pictures["desktop_screenshot"] = _desktop(size)
    return pictures


def _text_page(size: int) -> Image.Image:
    page = Image.new("RGB", (size, size), (255, 255, 255))
    draw = ImageDraw.Draw(page)
    font = ImageFont.load_default(size=13)
    words = PROSE.split()
    for row in range(16):
        line = " ".join(words[(row * 3 + k) % len(words)] for k in range(6))
        draw.text((8, 6 + row * 15), line, fill=(20, 20, 20), font=font)
    return page


def _desktop(size: int) -> Image.Image:
    """A window with a menu, a sidebar, text lines and buttons."""
    shot = Image.new("RGB", (size, size), (58, 110, 165))
    draw = ImageDraw.Draw(shot)
    draw.rectangle((10, 10, size - 10, size - 30), fill=(250, 250, 250), outline=(90, 90, 90))
    draw.rectangle((10, 10, size - 10, 30), fill=(45, 45, 60))
    draw.text((16, 14), "File  Edit  View  Help", fill=(230, 230, 230))
    draw.rectangle((10, 30, 70, size - 30), fill=(228, 232, 238))
    for row in range(9):
        draw.text((16, 40 + row * 18), f"item {row}", fill=(30, 30, 30))
        draw.line((80, 44 + row * 18, size - 20, 44 + row * 18), fill=(120, 120, 120), width=2)
    draw.rectangle((size - 90, size - 60, size - 20, size - 40), fill=(0, 120, 215))
    draw.text((size - 78, size - 56), "OK", fill=(255, 255, 255))
    draw.rectangle((0, size - 24, size, size), fill=(30, 30, 30))
    return shot
