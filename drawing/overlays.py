"""Attention maps drawn over the image, like Figures 2 and 3 of Show, Attend and Tell.

Each map is upsampled to the image, smoothed over about a cell so the grid does not show,
scaled by its own peak (so every word uses the full colour range, however diffuse it is),
colour-mapped and blended over a washed-out copy of the image. Only numpy and Pillow.
"""

import io
import math

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont, ImageOps

# Five stops of matplotlib's "inferno" (samples 0, 64, 128, 192, 255 of the published
# 256-entry table): black -> purple -> red -> orange -> pale yellow. Its lightness rises
# monotonically, so "brighter" reads as "more attention" even in greyscale.
_INFERNO_STOPS = np.array(
    [
        [0.001462, 0.000466, 0.013866],
        [0.341500, 0.062325, 0.429425],
        [0.735683, 0.215906, 0.330245],
        [0.978422, 0.557937, 0.034931],
        [0.988362, 0.998364, 0.644924],
    ]
)  # (5, 3)
_INFERNO_POSITIONS = np.linspace(0.0, 1.0, len(_INFERNO_STOPS))
# Half the saturation of the photo stays: objects keep recognisable colours (the captions
# name them) without competing with the colour map.
_BASE_SATURATION = 0.5
# Gaussian sigma as a fraction of one grid cell: hides the cell edges, keeps the peak local.
_BLUR_CELLS = 0.5
_WHITE = (255, 255, 255)
_INK = (20, 20, 20)


def colormap(values: np.ndarray) -> np.ndarray:
    """Map values in [0, 1] to inferno RGB in [0, 1]: (...) -> (..., 3)."""
    channels = [np.interp(values, _INFERNO_POSITIONS, _INFERNO_STOPS[:, c]) for c in range(3)]
    return np.stack(channels, axis=-1)


def attention_overlay(image: Image.Image, attention: np.ndarray, alpha: float = 0.6) -> Image.Image:
    """Blend one attention map (h, w), e.g. softmax weights over the grid, over `image`.

    `alpha` is the weight of the colour map: where attention is zero the map is black, so the
    image is darkened by `alpha`; where it peaks, the pale yellow end makes the region bright.
    """
    if attention.ndim != 2 or attention.size == 0:
        raise ValueError(f"attention must be a non-empty (h, w) map, got shape {attention.shape}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    heat = colormap(_upsample(attention, image.size))  # (H, W, 3)
    base = ImageEnhance.Color(image.convert("RGB")).enhance(_BASE_SATURATION)
    base_values = np.asarray(base, dtype=np.float64) / 255.0  # (H, W, 3)
    blended = (1.0 - alpha) * base_values + alpha * heat  # (H, W, 3)
    return Image.fromarray(np.round(blended * 255.0).astype(np.uint8))


def _upsample(attention: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an (h, w) map to `size` = (W, H), blur it, scale it to [0, 1] by its maximum."""
    width, height = size
    grid_h, grid_w = attention.shape
    values = np.nan_to_num(attention.astype(np.float32)).clip(min=0.0)  # (h, w)
    peak = float(values.max())
    if peak <= 0.0:
        return np.zeros((height, width))
    # Pillow blurs only 8-bit images, and 256 levels are plenty for display.
    levels = Image.fromarray(np.round(values * (255.0 / peak)).astype(np.uint8))
    sigma = (_BLUR_CELLS * width / grid_w, _BLUR_CELLS * height / grid_h)
    smooth = levels.resize(size, Image.Resampling.BICUBIC).filter(ImageFilter.GaussianBlur(sigma))
    smooth_values = np.asarray(smooth, dtype=np.float64)  # (H, W)
    return smooth_values / max(float(smooth_values.max()), 1.0)


def contact_sheet(
    image: Image.Image,
    words: list[str],
    maps: list[np.ndarray],
    columns: int = 5,
    tile: int = 224,
) -> Image.Image:
    """The paper's figure: the image, then one overlay per word with the word under it.

    Cells are `tile` square plus a label strip, laid out `min(columns, 1 + len(words))` wide
    on white; each image is fitted inside its tile without changing its aspect ratio.
    """
    if len(words) != len(maps):
        raise ValueError(f"got {len(words)} words but {len(maps)} attention maps")
    if columns < 1 or tile < 1:
        raise ValueError(f"columns and tile must be positive, got {columns} and {tile}")
    font_size = max(10, tile // 14)
    font = ImageFont.load_default(size=font_size)
    pad = max(2, tile // 32)
    label_height = round(font_size * 1.5)
    cell_w, cell_h = tile + 2 * pad, tile + label_height + 2 * pad
    thumb = ImageOps.contain(image.convert("RGB"), (tile, tile))
    tiles = [(thumb, "")] + [
        (attention_overlay(thumb, m), w) for w, m in zip(words, maps, strict=True)
    ]
    n_columns = min(columns, len(tiles))
    sheet = Image.new(
        "RGB", (n_columns * cell_w, math.ceil(len(tiles) / n_columns) * cell_h), _WHITE
    )
    draw = ImageDraw.Draw(sheet)
    for index, (picture, word) in enumerate(tiles):
        left, top = (index % n_columns) * cell_w + pad, (index // n_columns) * cell_h + pad
        sheet.paste(
            picture, (left + (tile - picture.width) // 2, top + (tile - picture.height) // 2)
        )
        label = _fit_label(draw, word, font, tile)
        draw.text(
            (left + tile / 2, top + tile + label_height / 2),
            label,
            fill=_INK,
            font=font,
            anchor="mm",
        )
    return sheet


def _fit_label(
    draw: ImageDraw.ImageDraw,
    word: str,
    font: ImageFont.FreeTypeFont | ImageFont.ImageFont,
    width: int,
) -> str:
    """Shorten a word with '...' until it fits under its tile."""
    if draw.textlength(word, font=font) <= width:
        return word
    label = word
    while label and draw.textlength(label + "...", font=font) > width:
        label = label[:-1]
    return label + "..."


def to_png_bytes(image: Image.Image) -> bytes:
    """Encode losslessly for an HTTP response: overlays are smooth, so PNG stays small."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
