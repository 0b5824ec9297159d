"""The only place that turns uploaded bytes into pixels.

Uploads are hostile until proven otherwise, so the checks run cheapest-first and before any
expensive work: the byte limit while reading, the format allow-list and the pixel limit from
the header (`open_image`, which also estimates what the decode will cost), and only then the
decode (`finish_decode`), no larger than the caller needs. Everything happens in memory.

How unrecognised bytes are classified (the API contract):
- empty upload -> InvalidImage (400): there is nothing to decode.
- bytes whose signature matches an allowed format but that do not parse or decode
  (truncated, corrupt) -> InvalidImage (400).
- anything else, whether another image format (SVG, AVIF, ICO), a document (HTML, zip, text)
  or random bytes -> UnsupportedImageType (415): we cannot recognise it as a type we accept.
"""

import io
import math
from collections.abc import AsyncIterable, AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
from PIL import Image, ImageOps

from service.errors import (
    GlimpseError,
    ImageTooLarge,
    ImageTooManyPixels,
    InvalidImage,
    UnsupportedImageType,
)

# 10 MiB holds a high-quality JPEG from any phone or DSLR (a 24 MP JPEG is ~5-12 MB) and large
# PNG screenshots; the model sees ~256 px, so bigger uploads only cost bandwidth and memory.
MAX_IMAGE_BYTES = 10 * 1024 * 1024
# 40 MP covers the photos of nearly every camera people upload from (phones save 12-24 MP,
# most DSLRs 24-45 MP). Images are shrunk on decode to what the model uses, so this bounds only
# one decode's moment: 160 MB for a flat PNG (Pillow keeps RGB at 4 bytes), ~120 MB of DCT
# coefficients for a progressive JPEG, 1/64 of that for a baseline one; the decode budget
# (`service.admission`) bounds all of them together.
MAX_IMAGE_PIXELS = 40_000_000
DEFAULT_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"})
READ_CHUNK_BYTES = 64 * 1024

# Pillow reports a multi-picture JPEG (what many phone cameras write) as "MPO"; its first
# picture is an ordinary JPEG, so it is accepted wherever JPEG is.
_FORMAT_FAMILY = {"MPO": "JPEG"}
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
_WIDE_MODES = _SIXTEEN_BIT_MODES | {"I", "F"}
# Bytes a pixel takes in Pillow's memory (RGB, CMYK, I, F... take 4); the modes `reduce` takes,
# and what the others are converted to first (P: RGB, or RGBA when it has a transparent colour).
_STORAGE_BYTES = {"1": 1, "L": 1, "P": 1} | dict.fromkeys(_SIXTEEN_BIT_MODES, 2)
_REDUCIBLE_MODES = frozenset({"L", "LA", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "I", "F"})
_REDUCIBLE_AS = {"1": "L"} | dict.fromkeys(_SIXTEEN_BIT_MODES, "I")
_SNIFF_BYTES = 16  # what Pillow's `Image.open` hands to each format's signature check
_WHITE = (255, 255, 255, 255)


@runtime_checkable
class AsyncReadable(Protocol):
    """What `starlette.datastructures.UploadFile` offers: `await file.read(size)`."""

    async def read(self, size: int = -1) -> bytes: ...


ImageSource = bytes | AsyncReadable | AsyncIterable[bytes]


async def read_limited(
    source: ImageSource,
    max_bytes: int = MAX_IMAGE_BYTES,
    chunk_size: int = READ_CHUNK_BYTES,
) -> bytes:
    """Read an upload, stopping at the first chunk that crosses `max_bytes`.

    Checking while reading bounds memory by the limit (plus one chunk) whatever the client
    sends; checking after reading would buffer a multi-gigabyte body first. `source` is an
    `UploadFile`-like object, an async iterator of chunks (`request.stream()`), or bytes
    already in memory (checked all the same, so every caller gets the one limit).
    """
    if isinstance(source, bytes):
        if len(source) > max_bytes:
            raise ImageTooLarge(max_bytes)
        return source
    chunks = _read_chunks(source, chunk_size) if isinstance(source, AsyncReadable) else source
    data = bytearray()
    async for chunk in chunks:
        data += chunk
        if len(data) > max_bytes:
            raise ImageTooLarge(max_bytes)
    return bytes(data)


async def _read_chunks(source: AsyncReadable, chunk_size: int) -> AsyncIterator[bytes]:
    while chunk := await source.read(chunk_size):
        yield chunk


@dataclass
class OpenedImage:
    """An upload whose header passed the checks, its pixels not decoded yet, and the bytes
    of memory its decode is estimated to need at its peak (what admission counts)."""

    image: Image.Image
    cost: int
    side: int | None
    max_pixels: int  # the limit Pillow's own bomb check is reported against while decoding


def decode_image(
    data: bytes,
    max_pixels: int = MAX_IMAGE_PIXELS,
    allowed_formats: frozenset[str] = DEFAULT_FORMATS,
    side: int | None = None,
) -> Image.Image:
    """Decode an upload into a new RGB image, or raise a typed error saying why not.

    With `side`, the image is decoded no larger than needed for a longest side of `side`
    (see `open_image`); without it, at full size.
    """
    return finish_decode(open_image(data, max_pixels, allowed_formats, side))


def open_image(
    data: bytes,
    max_pixels: int = MAX_IMAGE_PIXELS,
    allowed_formats: frozenset[str] = DEFAULT_FORMATS,
    side: int | None = None,
) -> OpenedImage:
    """Read and check the header (format allow-list, pixel limit) without decoding pixels.

    Pillow's own bomb check (`Image.MAX_IMAGE_PIXELS`, a process-wide global) is left alone:
    our `max_pixels` is checked from the header before any pixel is decoded, and Pillow's
    error or warning, should it fire first, is mapped to the same typed error. With `side`, a
    JPEG is set to decode at the smallest 1/2, 1/4 or 1/8 scale that keeps that longest side.
    """
    if not data:
        raise InvalidImage("the image is empty (0 bytes)")
    with _decoding(max_pixels, data, allowed_formats):
        img = Image.open(io.BytesIO(data), formats=sorted(allowed_formats))
        try:
            _check_format(img, allowed_formats)
        except GlimpseError:
            img.close()
            raise
        width, height = img.size
        if width * height > max_pixels:
            img.close()
            raise ImageTooManyPixels(max_pixels, width, height)
        if side is not None and img.format in ("JPEG", "MPO") and max(img.size) > side:
            scale = side / max(img.size)
            img.draft(None, (math.ceil(width * scale), math.ceil(height * scale)))
        cost = len(data) + decode_cost(img, width * height, side)
        return OpenedImage(img, cost, side, max_pixels)


def finish_decode(opened: OpenedImage) -> Image.Image:
    """Decode the pixels, shrink them to `side`, apply EXIF rotation, convert to RGB.

    The full-size pixels are dropped as soon as the smaller copy exists. Transparent pixels
    become white; the first frame of an animation is used.
    """
    img = opened.image
    with img, _decoding(opened.max_pixels, name=img.format):
        img.load()
        sixteen_bit = img.mode in _SIXTEEN_BIT_MODES
        small = _shrink(img, opened.side)
        ImageOps.exif_transpose(small, in_place=True)
        return _to_rgb(small, sixteen_bit)


def decode_cost(img: Image.Image, header_pixels: int, side: int | None) -> int:
    """Estimated peak bytes of decoding `img` (Pillow keeps RGB as 4 bytes a pixel).

    The decoded pixels, one full-size converted copy unless they shrink in their own mode,
    and the decoders' own buffers: a progressive JPEG holds every DCT coefficient of the
    full image (2 bytes per sample), libwebp decodes into a buffer of its own.
    """
    width, height = img.size
    pixels = width * height
    factor = max(width, height) // side if side else 1
    cost = pixels * _STORAGE_BYTES.get(img.mode, 4)
    if factor < 2:
        cost += pixels * 4  # the RGB copy
    else:
        cost += pixels // factor**2 * 8  # the reduced copy and its RGB copy
        if img.mode not in _REDUCIBLE_MODES:
            cost += pixels * 4  # converted at full size first
    if img.format in ("JPEG", "MPO") and img.info.get("progressive"):
        cost += int(header_pixels * 2 * _samples_per_pixel(img))
    elif img.format in ("WEBP", "TIFF"):
        cost += pixels * 4
    return cost


def _samples_per_pixel(img: Image.Image) -> float:
    """A JPEG's samples per pixel over its components (4:2:0 colour: 1.5), from its header."""
    layers = getattr(img, "layer", None) or [(None, 1, 1, None)] * len(img.getbands())
    most = max(h * v for _, h, v, _ in layers)
    return sum(h * v for _, h, v, _ in layers) / most


@contextmanager
def _decoding(
    max_pixels: int,
    data: bytes = b"",
    allowed_formats: frozenset[str] = frozenset(),
    name: str | None = None,
) -> Iterator[None]:
    """Map whatever Pillow raises on bad input to the typed errors of the API contract;
    `name` is the format when it is known, else it is sniffed from `data`."""
    try:
        yield
    except GlimpseError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageTooManyPixels(max_pixels) from err
    except Image.UnidentifiedImageError as err:
        raise _unidentified(data, allowed_formats) from err
    except MemoryError:
        raise
    except Exception as err:
        # Pillow's parsers raise OSError, SyntaxError, ValueError, EOFError, struct.error,
        # zlib.error... on malformed input; all of them mean "these bytes do not decode".
        name = name or _sniff(data, allowed_formats) or "image"
        raise InvalidImage(f"the {name} data could not be decoded: {err}") from err


def _shrink(img: Image.Image, side: int | None) -> Image.Image:
    """`img` reduced by a whole factor (box average) to a longest side in [side, 2 side)."""
    factor = max(img.size) // side if side else 1
    if factor < 2:
        return img
    if img.mode not in _REDUCIBLE_MODES:
        has_alpha = "transparency" in img.info
        img = img.convert(_REDUCIBLE_AS.get(img.mode, "RGBA" if has_alpha else "RGB"))
    return img.reduce(factor)


def _check_format(img: Image.Image, allowed_formats: frozenset[str]) -> None:
    family = _FORMAT_FAMILY.get(img.format or "", img.format)
    if family not in allowed_formats:
        raise UnsupportedImageType(
            f"{img.format} images are not accepted; send one of {_names(allowed_formats)}",
            allowed_formats,
        )


def _unidentified(data: bytes, allowed_formats: frozenset[str]) -> GlimpseError:
    """Tell a damaged image of an allowed format (400) from bytes of another type (415)."""
    name = _sniff(data, allowed_formats)
    if name is not None:
        return InvalidImage(f"the data starts like a {name} image but could not be parsed")
    return UnsupportedImageType(
        f"not a recognised image; send one of {_names(allowed_formats)}", allowed_formats
    )


def _sniff(data: bytes, allowed_formats: frozenset[str]) -> str | None:
    """The allowed format whose signature (Pillow's own check) the data starts with, if any."""
    prefix = data[:_SNIFF_BYTES]
    for name in sorted(allowed_formats):
        accept = Image.OPEN.get(name, (None, None))[1]
        if accept is not None and accept(prefix):
            return name
    return None


def _names(formats: frozenset[str]) -> str:
    return ", ".join(sorted(formats))


def _to_rgb(img: Image.Image, sixteen_bit: bool) -> Image.Image:
    """Convert any decoded mode to a new 8-bit RGB image; `sixteen_bit` says that wide
    samples came from a 16-bit image (reduced as 32-bit "I")."""
    if img.mode in _WIDE_MODES:
        return Image.fromarray(_to_uint8(np.asarray(img), sixteen_bit)).convert("RGB")
    if "A" in img.getbands() or "transparency" in img.info:
        # Composite on white: a transparent logo on a page is what people expect to see,
        # and the black that a plain convert("RGB") exposes would read as an object.
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, _WHITE)
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")  # L, 1, P, CMYK, YCbCr, LAB, HSV, RGBX; a copy when RGB


def _to_uint8(values: np.ndarray, sixteen_bit: bool) -> np.ndarray:
    """Scale wide grey samples to 0..255; Pillow's own convert clips them to white instead.

    16-bit samples have a known full scale (65535). 32-bit integers and floats do not, so
    they are stretched from their minimum to their maximum.
    """
    values = np.nan_to_num(values.astype(np.float64))  # (H, W)
    if sixteen_bit:
        low, high = 0.0, 65535.0
    else:
        low, high = float(values.min()), float(values.max())
    span = high - low if high > low else 1.0
    return np.round((values - low) * (255.0 / span)).clip(0, 255).astype(np.uint8)
