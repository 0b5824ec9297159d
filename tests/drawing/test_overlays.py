"""Attention overlays and the contact sheet: geometry, and bright where the model looked."""

import io

import numpy as np
import pytest
from PIL import Image

from drawing.overlays import attention_overlay, colormap, contact_sheet, to_png_bytes

GRID = 7
CELL = 20  # pixels per grid cell in the test image
GREY = (128, 128, 128)


def peaked_map(row: int, col: int, grid: tuple[int, int] = (GRID, GRID)) -> np.ndarray:
    """Softmax-like weights: most mass on one cell, a little everywhere, summing to 1."""
    weights = np.full(grid, 0.01)
    weights[row, col] = 1.0
    return weights / weights.sum()


def cell_brightness(image: Image.Image, row: int, col: int) -> float:
    pixels = np.asarray(image, dtype=np.float64)  # (H, W, 3)
    return pixels[row * CELL : (row + 1) * CELL, col * CELL : (col + 1) * CELL].mean()


def test_overlay_keeps_the_image_size_for_any_grid() -> None:
    image = Image.new("RGB", (150, 90), GREY)
    overlay = attention_overlay(image, peaked_map(1, 2, grid=(3, 5)))
    assert overlay.mode == "RGB"
    assert overlay.size == (150, 90)


def test_overlay_is_brightest_where_attention_peaks() -> None:
    image = Image.new("RGB", (GRID * CELL, GRID * CELL), GREY)
    overlay = attention_overlay(image, peaked_map(1, 5))
    peak, far = cell_brightness(overlay, 1, 5), cell_brightness(overlay, 5, 1)
    assert peak > 1.5 * far
    assert far < GREY[0]  # unattended regions are darkened
    brightest = np.unravel_index(np.asarray(overlay.convert("L")).argmax(), (GRID * CELL,) * 2)
    assert (brightest[0] // CELL, brightest[1] // CELL) == (1, 5)


def test_overlay_of_zero_attention_darkens_evenly() -> None:
    image = Image.new("RGB", (40, 40), GREY)
    pixels = np.asarray(attention_overlay(image, np.zeros((4, 4))), dtype=np.float64)
    assert pixels.max() < GREY[0]
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) == 1  # no spurious hot spot


def test_overlay_rejects_a_map_that_is_not_2d() -> None:
    with pytest.raises(ValueError, match="attention"):
        attention_overlay(Image.new("RGB", (8, 8)), np.ones(49) / 49)


def test_colormap_lightness_rises_from_black_to_pale_yellow() -> None:
    rgb = colormap(np.linspace(0.0, 1.0, 64))  # (64, 3)
    lightness = rgb @ np.array([0.299, 0.587, 0.114])  # (64,)
    assert np.all(np.diff(lightness) > 0)
    assert lightness[0] < 0.02 and lightness[-1] > 0.9


def sheet_cell(columns: int, tile: int) -> tuple[int, int]:
    """The size of one cell: a sheet holding only the original image is exactly one cell."""
    return contact_sheet(Image.new("RGB", (30, 20)), [], [], columns=columns, tile=tile).size


@pytest.mark.parametrize(
    ("n_words", "columns", "grid"),
    [(7, 3, (3, 3)), (2, 5, (3, 1)), (4, 5, (5, 1)), (5, 5, (5, 2))],
)
def test_contact_sheet_lays_out_image_then_words(
    n_words: int, columns: int, grid: tuple[int, int]
) -> None:
    cell_w, cell_h = sheet_cell(columns, tile=64)
    assert cell_w >= 64 and cell_h > 64  # room for the tile and its label
    maps = [peaked_map(i % GRID, 0) for i in range(n_words)]
    sheet = contact_sheet(Image.new("RGB", (90, 60), GREY), ["w"] * n_words, maps, columns, 64)
    assert sheet.size == (grid[0] * cell_w, grid[1] * cell_h)


def test_contact_sheet_shows_the_original_then_labelled_overlays() -> None:
    tile = 64
    cell_w, cell_h = sheet_cell(columns=5, tile=tile)
    pad = (cell_w - tile) // 2
    red = Image.new("RGB", (tile, tile), (220, 20, 20))
    sheet = np.asarray(contact_sheet(red, ["ball"], [peaked_map(3, 3)], tile=tile))  # (H, W, 3)
    assert tuple(sheet[pad + tile // 2, pad + tile // 2]) == (220, 20, 20)
    labels = sheet[pad + tile : cell_h]  # the strip under the tiles
    assert labels[:, :cell_w].min() == 255  # the original image has no label
    assert labels[:, cell_w:].min() < 100  # the word is written in dark ink
    assert tuple(sheet[pad + tile // 2, cell_w + pad + tile // 2]) != (220, 20, 20)


def test_a_long_word_is_shortened_to_its_own_tile() -> None:
    tile = 64
    cell_w, cell_h = sheet_cell(columns=5, tile=tile)
    pad = (cell_w - tile) // 2
    word = "supercalifragilisticexpialidocious"
    sheet = np.asarray(
        contact_sheet(Image.new("RGB", (tile, tile)), [word], [np.ones((2, 2))], tile=tile)
    )
    labels = sheet[pad + tile : cell_h]  # (label height, 2 * cell_w, 3)
    assert labels[:, :cell_w].min() == 255  # nothing spills into the neighbouring cell
    assert labels[:, cell_w:].min() < 100


def test_contact_sheet_needs_one_map_per_word() -> None:
    with pytest.raises(ValueError, match="words"):
        contact_sheet(Image.new("RGB", (8, 8)), ["a", "b"], [peaked_map(0, 0)])


def test_png_bytes_round_trip() -> None:
    image = attention_overlay(Image.new("RGB", (32, 24), GREY), peaked_map(2, 2))
    decoded = Image.open(io.BytesIO(to_png_bytes(image)))
    assert decoded.format == "PNG"
    assert np.array_equal(np.asarray(decoded), np.asarray(image))
