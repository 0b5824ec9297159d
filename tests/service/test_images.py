"""Safe decoding of uploads: every accepted kind of image, and every rejection with its code."""

import io
import struct
import zipfile
import zlib

import numpy as np
import pytest
from PIL import ExifTags, Image

from service.errors import ImageTooManyPixels, InvalidImage, UnsupportedImageType
from service.images import DEFAULT_FORMATS, MAX_IMAGE_PIXELS, decode_image

RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def close_to(pixel, expected, tolerance: int = 6) -> bool:
    return all(abs(int(a) - int(b)) <= tolerance for a, b in zip(pixel, expected, strict=True))


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))
        + kind
        + payload
        + struct.pack(">I", zlib.crc32(kind + payload))
    )


def png_header_only(width: int, height: int) -> bytes:
    """A ~60-byte PNG that declares a 1-bit greyscale image of any size (a decompression bomb)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00")  # one filter byte: the rows are never reached
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", idat)
        + png_chunk(b"IEND", b"")
    )


def noisy_image(width: int = 96, height: int = 64) -> Image.Image:
    """Noise does not compress, so the pixel data fills most of the file (for truncation)."""
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


# --- accepted images ------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", sorted(DEFAULT_FORMATS))
def test_every_allowed_format_decodes_to_rgb_of_the_right_size(fmt: str) -> None:
    data = encode(Image.new("RGB", (37, 23), (30, 120, 210)), fmt)
    image = decode_image(data)
    assert image.mode == "RGB"
    assert image.size == (37, 23)
    assert close_to(image.getpixel((18, 11)), (30, 120, 210))


def test_multi_picture_jpeg_from_a_camera_is_accepted_as_jpeg() -> None:
    second = Image.new("RGB", (16, 16), GREEN)
    data = encode(Image.new("RGB", (16, 16), RED), "MPO", save_all=True, append_images=[second])
    assert Image.open(io.BytesIO(data)).format == "MPO"
    assert close_to(decode_image(data).getpixel((8, 8)), RED)


def test_cmyk_jpeg_becomes_rgb() -> None:
    cyan_free_red = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # no cyan, full magenta+yellow
    image = decode_image(encode(cyan_free_red, "JPEG", quality=95))
    assert image.mode == "RGB"
    assert close_to(image.getpixel((8, 8)), RED, tolerance=8)


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_16_bit_greyscale_keeps_its_gradient(fmt: str) -> None:
    ramp = np.tile(np.linspace(0, 65535, 64), (8, 1)).astype(np.uint16)  # (8, 64)
    source = Image.fromarray(ramp)
    assert source.mode == "I;16"
    grey = np.asarray(decode_image(encode(source, fmt)))[:, :, 0].astype(int)  # (8, 64)
    assert 110 < grey.mean() < 145
    assert grey[:, 0].max() <= 2 and grey[:, -1].min() >= 253
    assert np.all(np.diff(grey[0]) >= 0)


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_transparent_pixels_are_composited_on_white(mode: str) -> None:
    rgba = Image.new("RGBA", (4, 1), (0, 0, 0, 255))
    rgba.putpixel((0, 0), (0, 0, 0, 0))  # fully transparent black
    rgba.putpixel((1, 0), (0, 0, 0, 128))  # half-transparent black
    image = decode_image(encode(rgba.convert(mode), "PNG"))
    assert image.getpixel((0, 0)) == WHITE
    assert close_to(image.getpixel((1, 0)), (127, 127, 127), tolerance=2)
    assert image.getpixel((2, 0)) == (0, 0, 0)


@pytest.mark.parametrize("fmt", ["PNG", "GIF"])
def test_palette_transparency_becomes_white(fmt: str) -> None:
    palette_image = Image.new("P", (4, 4), 1)
    palette_image.putpalette([0, 0, 0, *RED] + [0, 0, 0] * 254)
    palette_image.putpixel((0, 0), 0)
    image = decode_image(encode(palette_image, fmt, transparency=0))
    assert image.getpixel((0, 0)) == WHITE
    assert image.getpixel((3, 3)) == RED


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
def test_animation_gives_its_first_frame(fmt: str) -> None:
    frames = [Image.new("RGB", (12, 12), colour) for colour in (RED, GREEN, BLUE)]
    options = {"lossless": True} if fmt == "WEBP" else {}
    data = encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=50, **options)
    assert Image.open(io.BytesIO(data)).n_frames == 3
    assert close_to(decode_image(data).getpixel((6, 6)), RED)


@pytest.mark.parametrize(
    ("orientation", "red_corner"),
    [(6, "top_right"), (8, "bottom_left")],  # EXIF: 6 = rotate 90 CW to display, 8 = 90 CCW
)
def test_exif_orientation_is_applied(orientation: int, red_corner: str) -> None:
    stored = Image.new("RGB", (40, 20), BLUE)
    stored.paste(RED, (0, 0, 8, 8))  # the stored top-left corner
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    image = decode_image(encode(stored, "JPEG", quality=95, exif=exif.tobytes()))
    assert image.size == (20, 40)
    corners = {"top_right": (17, 2), "bottom_left": (2, 37)}
    for name, xy in corners.items():
        expected = RED if name == red_corner else BLUE
        assert close_to(image.getpixel(xy), expected, tolerance=40), name


@pytest.mark.parametrize("size", [(1, 1), (4000, 50)])
def test_extreme_sizes_decode(size: tuple[int, int]) -> None:
    assert decode_image(encode(Image.new("RGB", size, GREEN), "PNG")).size == size


def test_pixel_limit_is_inclusive() -> None:
    data = encode(Image.new("L", (100, 100)), "PNG")
    assert decode_image(data, max_pixels=10_000).size == (100, 100)
    with pytest.raises(ImageTooManyPixels):
        decode_image(data, max_pixels=9_999)


# --- rejected uploads -----------------------------------------------------------------------


def test_empty_upload_is_invalid() -> None:
    with pytest.raises(InvalidImage, match="empty"):
        decode_image(b"")


@pytest.mark.parametrize(
    "data",
    [
        np.random.default_rng(1).bytes(4096),
        b"this is a text file that someone named photo.png\n",
        b'<svg xmlns="http://www.w3.org/2000/svg"><rect width="9" height="9"/></svg>',
        b"<!DOCTYPE html><html><body><img src=x onerror=alert(1)></body></html>",
    ],
    ids=["random", "text", "svg", "html"],
)
def test_non_images_are_unsupported(data: bytes) -> None:
    with pytest.raises(UnsupportedImageType):
        decode_image(data)


def test_zip_file_is_unsupported() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("image.png", encode(Image.new("RGB", (4, 4)), "PNG"))
    with pytest.raises(UnsupportedImageType) as caught:
        decode_image(buffer.getvalue())
    assert caught.value.code == "unsupported_image_type"
    assert caught.value.details()["allowed"] == sorted(DEFAULT_FORMATS)


def test_image_format_outside_the_allow_list_is_unsupported() -> None:
    with pytest.raises(UnsupportedImageType):
        decode_image(encode(Image.new("RGB", (16, 16)), "ICO"))
    with pytest.raises(UnsupportedImageType):
        decode_image(encode(Image.new("RGB", (16, 16)), "PNG"), allowed_formats=frozenset({"JPEG"}))


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
@pytest.mark.parametrize("keep", [0.5, 0.05])
def test_truncated_files_are_invalid(fmt: str, keep: float) -> None:
    data = encode(noisy_image(), fmt)
    with pytest.raises(InvalidImage) as caught:
        decode_image(data[: int(len(data) * keep)])
    assert caught.value.code == "invalid_image"


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF"])
def test_image_cut_inside_its_header_is_invalid_not_unsupported(fmt: str) -> None:
    data = encode(noisy_image(), fmt)
    with pytest.raises(InvalidImage, match=fmt):
        decode_image(data[:20])


@pytest.mark.parametrize(
    ("width", "height"),
    [(8_000, 8_000), (100_000, 100_000)],  # under / over twice Pillow's own 89 MP limit
)
def test_png_decompression_bomb_is_refused_before_decoding(width: int, height: int) -> None:
    data = png_header_only(width, height)
    assert len(data) < 100
    with pytest.raises(ImageTooManyPixels) as caught:
        decode_image(data)
    assert caught.value.code == "image_too_many_pixels"
    assert caught.value.details()["max_pixels"] == MAX_IMAGE_PIXELS


@pytest.mark.filterwarnings("error::PIL.Image.DecompressionBombWarning")
def test_pillow_bomb_warning_raised_as_error_is_mapped() -> None:
    with pytest.raises(ImageTooManyPixels):
        decode_image(png_header_only(10_000, 10_000), max_pixels=500_000_000)


def test_gif_with_a_huge_logical_screen_is_refused() -> None:
    data = bytearray(encode(Image.new("P", (1, 1)), "GIF"))
    data[6:10] = struct.pack("<HH", 65535, 65535)  # logical screen width, height
    with pytest.raises(ImageTooManyPixels):
        decode_image(bytes(data))
