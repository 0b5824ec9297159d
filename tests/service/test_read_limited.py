"""Reading an upload within the byte limit: memory stays bounded whatever the client sends."""

import asyncio
import io

import pytest
from PIL import Image
from starlette.datastructures import UploadFile

from service.errors import ImageTooLarge
from service.images import decode_image, read_limited


class CountingReader:
    """A body of `chunks` x `chunk_size` bytes that records how much was pulled from it."""

    def __init__(self, chunks: int, chunk_size: int) -> None:
        self.remaining = chunks * chunk_size
        self.pulled = 0

    async def read(self, size: int = -1) -> bytes:
        size = self.remaining if size < 0 else min(size, self.remaining)
        self.remaining -= size
        self.pulled += size
        return b"x" * size


def test_read_limited_stops_reading_once_over_the_limit() -> None:
    reader = CountingReader(chunks=1000, chunk_size=1024)
    with pytest.raises(ImageTooLarge) as caught:
        asyncio.run(read_limited(reader, max_bytes=5000, chunk_size=1024))
    assert reader.pulled <= 5000 + 1024
    assert caught.value.details() == {"max_bytes": 5000}


def test_read_limited_stops_pulling_an_async_stream() -> None:
    pulled = []

    async def stream():
        for _ in range(1000):
            pulled.append(1024)
            yield b"x" * 1024

    with pytest.raises(ImageTooLarge):
        asyncio.run(read_limited(stream(), max_bytes=5000))
    assert sum(pulled) <= 5000 + 1024


def test_read_limited_returns_a_body_at_the_limit() -> None:
    data = asyncio.run(read_limited(CountingReader(chunks=5, chunk_size=1000), max_bytes=5000))
    assert data == b"x" * 5000


def test_read_limited_checks_bytes_already_in_memory() -> None:
    assert asyncio.run(read_limited(b"x" * 5000, max_bytes=5000)) == b"x" * 5000
    with pytest.raises(ImageTooLarge):
        asyncio.run(read_limited(b"x" * 5001, max_bytes=5000))


def test_read_limited_reads_a_starlette_upload() -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (255, 0, 0)).save(buffer, "PNG")
    png = buffer.getvalue()
    data = asyncio.run(read_limited(UploadFile(io.BytesIO(png)), max_bytes=len(png), chunk_size=7))
    assert decode_image(data).getpixel((4, 4)) == (255, 0, 0)
    with pytest.raises(ImageTooLarge):
        asyncio.run(read_limited(UploadFile(io.BytesIO(png)), max_bytes=len(png) - 1))
