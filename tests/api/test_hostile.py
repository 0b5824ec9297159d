"""What a public endpoint receives: hostile bytes, awkward images and mangled fields.

The corpus is generated here, not committed. Every reject must be a 4xx in the one JSON error
shape, every valid image a 200, and the server must answer `/healthz` after each.
"""

import io
import os
import random
import struct
import tempfile
import time
import zipfile
import zlib
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from api.app import create_app
from api.middleware import TextPartChecker


def assert_rejected(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] == code
    assert isinstance(error["message"], str) and error["message"]
    return error


def encode(img: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def noisy(size: tuple[int, int], mode: str = "RGB", seed: int = 0) -> Image.Image:
    """An asymmetric picture: noise plus a bright block in the top-left corner."""
    width, height = size
    bands = len(Image.new(mode, (1, 1)).getbands())
    pixels = np.random.default_rng(seed).integers(0, 255, (height, width, bands), np.uint8)
    pixels[: max(1, height // 3), : max(1, width // 3)] = 250
    return Image.fromarray(pixels.squeeze(-1) if bands == 1 else pixels, mode)


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload)
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def png_bomb() -> bytes:
    """A valid-looking PNG of 100,000 x 100,000 pixels in about 100 bytes."""
    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)  # 8-bit grey
    data = zlib.compress(b"\x00" * 1024, 9)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", data)
        + png_chunk(b"IEND", b"")
    )


def gif_huge_screen() -> bytes:
    """A 1x1 GIF frame on a 65,535 x 65,535 logical screen."""
    small = encode(Image.new("P", (1, 1)), "GIF")
    return small[:6] + struct.pack("<HH", 65535, 65535) + small[10:]


def a_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("picture.png", encode(noisy((8, 8)), "PNG"))
    return buffer.getvalue()


HOSTILE = {
    "empty": (lambda: b"", 400, "invalid_image"),
    "random-bytes": (lambda: random.Random(0).randbytes(4096), 415, "unsupported_image_type"),
    "text-named-png": (lambda: b"hello, I am a picture", 415, "unsupported_image_type"),
    "truncated-jpeg": (lambda: encode(noisy((64, 48)), "JPEG")[:300], 400, "invalid_image"),
    "truncated-png": (lambda: encode(noisy((64, 48)), "PNG")[:200], 400, "invalid_image"),
    "png-bomb": (png_bomb, 413, "image_too_many_pixels"),
    "gif-huge-screen": (gif_huge_screen, 413, "image_too_many_pixels"),
    "svg": (
        lambda: b'<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"><rect/></svg>',
        415,
        "unsupported_image_type",
    ),
    "html": (lambda: b"<!doctype html><img src=x onerror=alert(1)>", 415, "unsupported_image_type"),
    "zip": (a_zip, 415, "unsupported_image_type"),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_bytes_are_rejected_and_the_server_stays_healthy(client, name) -> None:
    make, status, code = HOSTILE[name]
    files = {"image": ("picture.png", make(), "image/png")}
    assert_rejected(client.post("/v1/captions", files=files), status, code)
    assert client.get("/healthz").status_code == 200


def exif_rotated_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    return encode(noisy((64, 32)), "JPEG", exif=exif, quality=95)


def animated_gif() -> bytes:
    frames = [noisy((24, 24), seed=seed).convert("P") for seed in range(3)]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50)


AWKWARD = {
    "1x1": lambda: encode(Image.new("RGB", (1, 1), (9, 9, 9)), "PNG"),
    "cmyk-jpeg": lambda: encode(noisy((32, 32)).convert("CMYK"), "JPEG"),
    "grey-16bit-png": lambda: encode(
        Image.fromarray(np.arange(32 * 32, dtype=np.uint16).reshape(32, 32) * 60), "PNG"
    ),
    "rgba-png": lambda: encode(noisy((32, 32), "RGBA"), "PNG"),
    "palette-png": lambda: encode(noisy((32, 32)).convert("P"), "PNG"),
    "animated-gif": animated_gif,
    "exif-rotated-jpeg": exif_rotated_jpeg,
    "4000x50": lambda: encode(noisy((4000, 50)), "PNG"),
    "webp": lambda: encode(noisy((32, 32)), "WEBP"),
    "bmp": lambda: encode(noisy((32, 32)), "BMP"),
    "tiff": lambda: encode(noisy((32, 32)), "TIFF"),
}


@pytest.mark.parametrize("name", list(AWKWARD))
def test_awkward_but_valid_images_are_captioned(client, name) -> None:
    data = AWKWARD[name]()
    assert Image.open(io.BytesIO(data)).size  # the corpus itself is a real image
    response = client.post(
        "/v1/captions", files={"image": ("x", data, "image/*")}, data={"max_length": "3"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["tokens"]
    assert client.get("/healthz").status_code == 200


def test_exif_rotation_is_applied_before_attention(client) -> None:
    """The maps describe the picture as displayed, so they match the upright upload."""
    data = exif_rotated_jpeg()
    stored = Image.open(io.BytesIO(data)).convert("RGB")  # pixels as stored, 64 x 32
    upright = stored.transpose(Image.Transpose.ROTATE_270)  # what orientation 6 displays

    def attention(image: bytes) -> np.ndarray:
        form = {"beam_size": "1", "max_length": "3"}
        response = client.post("/v1/captions", files={"image": ("x", image)}, data=form)
        assert response.status_code == 200, response.text
        return np.array([token["attention"] for token in response.json()["tokens"]])

    rotated = attention(data)
    assert np.allclose(rotated, attention(encode(upright, "PNG")), atol=2e-4)
    assert not np.allclose(rotated, attention(encode(stored, "PNG")), atol=2e-4)


@pytest.fixture(scope="module")
def small_limits(settings_for, serve_app):
    settings = settings_for(max_image_bytes=50_000, max_question_chars=40)
    with serve_app(create_app(settings)).client() as client:
        yield client


def image_file() -> dict:
    return {"image": ("a.png", encode(noisy((16, 16)), "PNG"), "image/png")}


@pytest.mark.parametrize(
    ("form", "words"),
    [
        ({"question": ""}, "question"),
        ({"question": "x" * 10_000}, "longer than 40"),
        ({"question": " \t\n "}, "empty"),
        ({"question": "what\x00 is\x07 this?"}, "control character"),
        ({"question": "what is this?", "colour": "red"}, "unknown field"),
    ],
    ids=["empty", "10k-chars", "whitespace", "control-chars", "unknown-field"],
)
def test_mangled_questions_are_422(small_limits, form, words) -> None:
    response = small_limits.post("/v1/vqa", files=image_file(), data=form)
    error = assert_rejected(response, 422, "invalid_field")
    assert words in error["message"].lower()


def multipart_body(boundary: str, question: bytes) -> bytes:
    """A question field with these exact bytes, then an image, as a browser would send."""
    return (
        f'--{boundary}\r\nContent-Disposition: form-data; name="question"\r\n\r\n'.encode()
        + question
        + f'\r\n--{boundary}\r\nContent-Disposition: form-data; name="image"; '
        'filename="a.png"\r\nContent-Type: image/png\r\n\r\n'.encode()
        + encode(noisy((16, 16)), "PNG")
        + f"\r\n--{boundary}--\r\n".encode()
    )


@pytest.mark.parametrize("question", [b"what \xff\xfe is this?", b"what color is the \xc3(?"])
def test_a_question_in_invalid_utf8_is_rejected(small_limits, question: bytes) -> None:
    headers = {"content-type": "multipart/form-data; boundary=glimpse"}
    body = multipart_body("glimpse", question)
    response = small_limits.post("/v1/vqa", content=body, headers=headers)
    error = assert_rejected(response, 422, "invalid_field")
    assert error["field"] == "question" and "UTF-8" in error["message"]


@pytest.mark.parametrize("chunk", [1, 7, 1 << 20])
def test_text_parts_are_checked_however_the_body_is_split(chunk: int) -> None:
    for question, bad_field in ((b"what \xc3(?", "question"), ("caf\u00e9?".encode(), None)):
        body = multipart_body("glimpse", question)
        checker = TextPartChecker(b"glimpse")
        for start in range(0, len(body), chunk):
            checker.write(body[start : start + chunk])
        assert checker.bad_field == bad_field


def test_a_question_in_utf8_beyond_ascii_is_read_as_sent(small_limits) -> None:
    question = "what colour is the café's circle?"
    headers = {"content-type": "multipart/form-data; boundary=glimpse"}
    body = multipart_body("glimpse", question.encode())
    response = small_limits.post("/v1/vqa", content=body, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["answers"][0]["question"] == question


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b"image=abc", "application/x-www-form-urlencoded"),
        (b"\x89PNG\r\n\x1a\n", "image/png"),
        (b"hello", "text/plain"),
        (b"--x\r\nbroken", "multipart/form-data; boundary=x"),
        (b"", "multipart/form-data"),
    ],
    ids=["urlencoded", "raw-png", "text", "broken-multipart", "no-boundary"],
)
def test_wrong_content_types_are_4xx(small_limits, content, content_type) -> None:
    response = small_limits.post(
        "/v1/captions", content=content, headers={"content-type": content_type}
    )
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["error"]["message"]
    assert small_limits.get("/healthz").status_code == 200


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("beam_size", "99999999999999999999999"),
        ("beam_size", "-1"),
        ("max_length", "0"),
        ("max_length", "1e9"),
    ],
)
def test_out_of_range_options_are_422_naming_the_field(small_limits, field, value) -> None:
    response = small_limits.post("/v1/captions", files=image_file(), data={field: value})
    assert assert_rejected(response, 422, "invalid_field")["field"] == field


def test_two_images_are_refused(small_limits) -> None:
    png = encode(noisy((16, 16)), "PNG")
    files = [("image", ("a.png", png, "image/png")), ("image", ("b.png", png, "image/png"))]
    response = small_limits.post("/v1/captions", files=files)
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["error"]["message"]


def _temp_files_held() -> list[str]:
    """Files under the temp dir that this process (and its in-process server) holds open."""
    temp = tempfile.gettempdir()
    targets = []
    for fd in Path("/proc/self/fd").iterdir():
        try:
            targets.append(os.readlink(fd))
        except OSError:  # closed while listing
            continue
    return [target for target in targets if target.startswith(temp)]


def test_a_large_upload_leaves_nothing_on_disk(client) -> None:
    """Starlette spools parts over 1 MiB to an anonymous temp file (no name in the temp dir):
    it must be closed, so its disk space freed, once the request is answered."""
    data = encode(noisy((900, 800)), "PNG")
    assert len(data) > 1024 * 1024  # past starlette's in-memory spool size
    before_held = _temp_files_held()
    response = client.post(
        "/v1/captions", files={"image": ("big.png", data)}, data={"max_length": "2"}
    )
    assert response.status_code == 200, response.text
    deadline = time.monotonic() + 5.0  # FastAPI closes uploads just after the response is sent
    while _temp_files_held() != before_held:
        assert time.monotonic() < deadline, f"still open: {_temp_files_held()}"
        time.sleep(0.02)
