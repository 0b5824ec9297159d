"""Decoding no more than the model needs: large images shrink on decode (JPEGs in the
decoder), their cost is known from the header, and the full-size pixels do not outlive it."""

import io
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from service.images import decode_image, open_image

SIDE = 256


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def halves(width: int, height: int) -> Image.Image:
    """Red left half, blue right half: survives any reduction, shows any mirroring."""
    pixels = np.zeros((height, width, 3), np.uint8)  # (H, W, 3)
    pixels[:, : width // 2] = (220, 20, 20)
    pixels[:, width // 2 :] = (20, 20, 220)
    return Image.fromarray(pixels)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "TIFF"])
def test_a_large_image_decodes_to_a_longest_side_between_side_and_twice_side(fmt) -> None:
    data = encode(halves(3000, 1200), fmt)
    image = decode_image(data, side=SIDE)
    assert SIDE <= max(image.size) < 2 * SIDE and image.mode == "RGB"
    assert abs(image.width / image.height - 2.5) < 0.05  # the aspect ratio is kept
    left, right = image.getpixel((5, image.height // 2)), image.getpixel((image.width - 5, 5))
    assert left[0] > 180 > left[2] and right[2] > 180 > right[0]


def test_small_images_are_decoded_exactly_as_without_a_side() -> None:
    data = encode(halves(300, 200), "PNG")
    assert np.array_equal(np.asarray(decode_image(data, side=SIDE)), np.asarray(decode_image(data)))


def test_a_large_jpeg_is_decoded_at_a_fraction_of_its_size() -> None:
    data = encode(halves(4000, 3000), "JPEG")
    opened = open_image(data, side=SIDE)
    assert opened.image.size == (500, 375)  # 1/8 scale in the decoder, before any pixel
    assert opened.cost < 4000 * 3000  # far below its 48 MB at full size


def test_exif_rotation_survives_the_shrinking() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    image = decode_image(encode(halves(2400, 800), "PNG", exif=exif), side=SIDE)
    assert image.height > image.width  # portrait as displayed
    top, bottom = image.getpixel((image.width // 2, 5)), image.getpixel((5, image.height - 5))
    assert top[0] > 180 and bottom[2] > 180  # the red left half is now on top


def test_large_16_bit_and_palette_images_keep_their_meaning() -> None:
    grey = Image.fromarray(np.full((1200, 1600), 32768, np.uint16))
    assert decode_image(encode(grey, "PNG"), side=SIDE).getpixel((3, 3)) == (128, 128, 128)
    palette = halves(1600, 1200).quantize(2)  # the red half is transparent:
    image = decode_image(encode(palette, "PNG", transparency=palette.getpixel((0, 0))), side=SIDE)
    assert image.getpixel((3, 3)) == (255, 255, 255)
    assert image.getpixel((image.width - 3, 3))[2] > 180


PROBE = """
import io, json, sys
from pathlib import Path
from PIL import Image
from service.images import finish_decode, open_image

def rss_kib(name):
    line = next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith(name))
    return int(line.split()[1])

fmt, side = sys.argv[1], int(sys.argv[2])
buffer = io.BytesIO()
options = {"progressive": True} if fmt == "JPEG" else {}
Image.new("RGB", (3000, 3000), (90, 140, 30)).save(buffer, fmt, **options)
data = buffer.getvalue()
Path("/proc/self/clear_refs").write_text("5")  # restart the peak (VmHWM) counter
before = rss_kib("VmRSS")
opened = open_image(data, 40_000_000, frozenset({fmt}), side or None)
image = finish_decode(opened)
print(json.dumps({"cost": opened.cost, "peak": (rss_kib("VmHWM") - before) * 1024}))
"""


def peak_of_decoding(fmt: str, side: int) -> dict:
    """Bytes the decode of a 9 Mpx flat image took at its peak, in a fresh process."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, fmt, str(side)], capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_the_estimated_cost_covers_the_real_peak_and_shrinking_lowers_it(fmt: str) -> None:
    shrunk, full = peak_of_decoding(fmt, 512), peak_of_decoding(fmt, 0)
    assert shrunk["peak"] <= shrunk["cost"] * 1.1 + 4 * 2**20
    assert full["peak"] <= full["cost"] * 1.1 + 4 * 2**20
    assert shrunk["peak"] < 0.6 * full["peak"]  # no full-size RGB copy next to the decode
