"""Held-out shapes worlds for the quality benchmark: fresh worlds from seeds training never
used, and copies of one whose images went through what people do to pictures (JPEG at
quality 70 and 90, resized to 192 and 512 px) before the model sees them.

A copy keeps the annotations and file names and stores the changed pixels losslessly (PNG):
the model reads exactly what it would decode from the JPEG or the resized file; the boxes
stay in the original image's coordinates, which the pointing game scales maps to.
"""

import shutil
from collections.abc import Callable
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from training.data.shapes import generate
from training.domain import jpeg

CONDITIONS: dict[str, Callable[[Image.Image], Image.Image]] = {
    "jpeg_q70": lambda image: jpeg(image, 70),
    "jpeg_q90": lambda image: jpeg(image, 90),
    "resized_192": lambda image: resized_to(image, 192),
    "resized_512": lambda image: resized_to(image, 512),
}


def resized_to(image: Image.Image, side: int) -> Image.Image:
    """The image with its longer side `side` pixels, as a photo app or a chat resizes it."""
    scale = side / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.convert("RGB").resize(size, Image.Resampling.BICUBIC)


def heldout_world(root: Path, images: int, seed: int) -> None:
    if not (root / "annotations" / "captions_test.json").is_file():
        generate(root, {"train": 0, "val": 0, "test": images}, seed=seed)


def changed_world(root: Path, condition: str) -> Path:
    """`root`'s copy under `condition` (made once, beside it): ROOT-CONDITION."""
    out = root.with_name(f"{root.name}-{condition}")
    done = out / "annotations" / "captions_test.json"
    if done.is_file():
        return out
    change = CONDITIONS[condition]
    images = sorted((root / "images" / "test").iterdir())
    (out / "images" / "test").mkdir(parents=True, exist_ok=True)
    for path in tqdm(images, desc=f"world {out.name}", unit="img"):
        with Image.open(path) as image:
            change(image).save(out / "images" / "test" / path.name)
    shutil.copytree(root / "annotations", out / "annotations.tmp", dirs_exist_ok=True)
    (out / "annotations.tmp").rename(out / "annotations")  # last: a copy stopped half-way redoes
    return out
