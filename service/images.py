"""The only place that turns uploaded bytes into pixels.

Uploads are hostile until proven otherwise, so the checks run cheapest-first and before any
expensive work: the byte limit while reading, the format allow-list and the pixel limit from
the header, and only then the decode. Everything happens in memory; nothing touches disk.

How unrecognised bytes are classified (the API contract):
- empty upload -> InvalidImage (400): there is nothing to decode.
- bytes whose signature matches an allowed format but that do not parse or decode
  (truncated, corrupt) -> InvalidImage (400).
- anything else, whether another image format (SVG, AVIF, ICO), a document (HTML, zip, text)
  or random bytes -> UnsupportedImageType (415): we cannot recognise it as a type we accept.
"""

import io
from collections.abc import AsyncIterable, AsyncIterator
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
# most DSLRs 24-45 MP) while bounding one decode to ~120 MB of RGB (plus one working copy),
# half of Pillow's own 89 MP warning threshold, so a handful of concurrent requests stays safe.
MAX_IMAGE_PIXELS = 40_000_000
DEFAULT_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"})
READ_CHUNK_BYTES = 64 * 1024

# Pillow reports a multi-picture JPEG (what many phone cameras write) as "MPO"; its first
# picture is an ordinary JPEG, so it is accepted wherever JPEG is.
_FORMAT_FAMILY = {"MPO": "JPEG"}
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
_WIDE_MODES = _SIXTEEN_BIT_MODES | {"I", "F"}
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


def decode_image(
    data: bytes,
    max_pixels: int = MAX_IMAGE_PIXELS,
    allowed_formats: frozenset[str] = DEFAULT_FORMATS,
) -> Image.Image:
    """Decode an upload into a new RGB image, or raise a typed error saying why not.

    Pillow's own bomb check (`Image.MAX_IMAGE_PIXELS`, a process-wide global) is left alone:
    our `max_pixels` is checked from the header before any pixel is decoded, and Pillow's
    error or warning, should it fire first, is mapped to the same typed error.
    Transparent pixels become white; the first frame of an animation is used.
    """
    if not data:
        raise InvalidImage("the image is empty (0 bytes)")
    try:
        with Image.open(io.BytesIO(data), formats=sorted(allowed_formats)) as img:
            _check_format(img, allowed_formats)
            width, height = img.size
            if width * height > max_pixels:
                raise ImageTooManyPixels(max_pixels, width, height)
            img.load()
            ImageOps.exif_transpose(img, in_place=True)
            return _to_rgb(img)
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
        name = _sniff(data, allowed_formats) or "image"
        raise InvalidImage(f"the {name} data could not be decoded: {err}") from err


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


def _to_rgb(img: Image.Image) -> Image.Image:
    """Convert any decoded mode to a new 8-bit RGB image."""
    if img.mode in _WIDE_MODES:
        return Image.fromarray(_to_uint8(np.asarray(img), img.mode)).convert("RGB")
    if "A" in img.getbands() or "transparency" in img.info:
        # Composite on white: a transparent logo on a page is what people expect to see,
        # and the black that a plain convert("RGB") exposes would read as an object.
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, _WHITE)
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")  # L, 1, P, CMYK, YCbCr, LAB, HSV, RGBX; a copy when RGB


def _to_uint8(values: np.ndarray, mode: str) -> np.ndarray:
    """Scale wide grey samples to 0..255; Pillow's own convert clips them to white instead.

    16-bit samples have a known full scale (65535). 32-bit integers and floats do not, so
    they are stretched from their minimum to their maximum.
    """
    values = np.nan_to_num(values.astype(np.float64))  # (H, W)
    if mode in _SIXTEEN_BIT_MODES:
        low, high = 0.0, 65535.0
    else:
        low, high = float(values.min()), float(values.max())
    span = high - low if high > low else 1.0
    return np.round((values - low) * (255.0 / span)).clip(0, 255).astype(np.uint8)
