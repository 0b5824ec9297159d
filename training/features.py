"""Feature cache for a frozen encoder: grids computed once, read by every epoch.

One split is two files in `out_dir`: `features_<split>.npy`, an fp16 (N, L, D) array read
through a memory map, and `features_<split>.json`, its index (image ids in row order, grid,
dim, fingerprint). The JSON is written last, so a build that stops half-way never leaves a
cache that looks valid.
"""

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from models.encoders import Encoder, encode_in_chunks
from models.preprocess import image_to_tensor
from training.augment import AUGMENTATION, augmented, view_of


class FeatureCacheError(ValueError):
    """A cache on disk is missing, incomplete or inconsistent with its index."""


def feature_paths(out_dir: Path, split: str) -> tuple[Path, Path]:
    """(array, index) file paths of one split."""
    out_dir = Path(out_dir)
    return out_dir / f"features_{split}.npy", out_dir / f"features_{split}.json"


def state_dict_sha256(module: torch.nn.Module) -> str:
    """Hash of every tensor in the state dict: changes when any weight or BN statistic does."""
    digest = hashlib.sha256()
    for key, tensor in sorted(module.state_dict().items()):
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{key}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def encoder_fingerprint(encoder: Encoder, image_size: int) -> dict[str, object]:
    """Everything that decides the cached values, apart from the images themselves."""
    return {
        "encoder": encoder.name,
        "layers": list(encoder.layers),
        "image_size": image_size,
        "weights_sha256": state_dict_sha256(encoder),
    }


@dataclass(eq=False)
class FeatureCache:
    """Read-only view of one split's cached grids."""

    features: np.ndarray  # (N, L, D) float16, memory-mapped
    image_ids: list[int]
    grid: tuple[int, int]
    dim: int
    fingerprint: dict[str, object]

    def __post_init__(self) -> None:
        self._rows = {image_id: row for row, image_id in enumerate(self.image_ids)}

    def __len__(self) -> int:
        return len(self.image_ids)

    def row(self, image_id: int) -> int:
        if image_id not in self._rows:
            raise KeyError(f"image id {image_id} is not in this feature cache")
        return self._rows[image_id]

    def __getitem__(self, row: int) -> torch.Tensor:
        return torch.from_numpy(self.features[row].astype(np.float32))  # (L, D)

    def take(self, rows: Sequence[int]) -> torch.Tensor:
        """Several rows in one read: a training batch (B, L, D), kept in float16. The model
        converts it where it runs (`GridAdapter`), on a GPU for free, where a float32 copy made
        here took most of a COCO-size batch's time on the CPU."""
        return torch.from_numpy(self.features[np.asarray(rows)])

    @classmethod
    def open(cls, out_dir: Path, split: str) -> "FeatureCache":
        """Open a finished cache; raises FeatureCacheError when it is absent or inconsistent."""
        array_path, index_path = feature_paths(out_dir, split)
        if not index_path.is_file() or not array_path.is_file():
            raise FeatureCacheError(f"no feature cache for split {split!r} in {out_dir}")
        try:
            index = json.loads(index_path.read_text())
            features = np.load(array_path, mmap_mode="r")
            grid = (int(index["grid"][0]), int(index["grid"][1]))
            expected = (len(index["image_ids"]), grid[0] * grid[1], int(index["dim"]))
        except (OSError, ValueError, KeyError, IndexError, TypeError) as error:
            raise FeatureCacheError(f"unreadable feature cache {index_path}: {error}") from error
        if features.shape != expected or features.dtype != np.float16:
            raise FeatureCacheError(
                f"{array_path} holds {features.dtype}{features.shape}, index says {expected}"
            )
        return cls(features, list(index["image_ids"]), grid, expected[2], index["fingerprint"])


@dataclass(frozen=True)
class View:
    """Which view of the images a cache holds: 0 the images as they are, k > 0 the k-th
    augmented view (training.augment), drawn from `seed`."""

    number: int = 0
    seed: int = 0

    def fingerprint(self) -> dict[str, object]:
        if not self.number:
            return {}
        return {"view": self.number, "view_seed": self.seed, "augmentation": AUGMENTATION}


CLEAN = View()  # the images as they are


class ImageFiles(Dataset):
    """Decoded, resized images in [0, 1], so a DataLoader can decode ahead of the encoder."""

    def __init__(self, paths: Sequence[Path], image_size: int, view: View = CLEAN) -> None:
        self.paths, self.image_size, self.view = list(paths), image_size, view

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        with Image.open(self.paths[index]) as image:
            if self.view.number:
                rng = view_of(self.view.seed, self.view.number, index)
                return image_to_tensor(augmented(image, rng), self.image_size)
            return image_to_tensor(image, self.image_size)  # (3, S, S)


class ViewedFeatures:
    """A feature store over a clean cache and its augmented views (the same image ids in the
    same rows): each example read gets one of them at random."""

    def __init__(self, caches: Sequence[FeatureCache], seed: int) -> None:
        if any(c.image_ids != caches[0].image_ids for c in caches[1:]):
            raise ValueError("every view must cache the same images in the same order")
        self.caches = list(caches)
        self.rng = np.random.default_rng(seed)

    def row(self, image_id: int) -> int:
        return self.caches[0].row(image_id)

    def __getitem__(self, row: int) -> torch.Tensor:
        return self.caches[int(self.rng.integers(len(self.caches)))][row]

    def take(self, rows: Sequence[int]) -> torch.Tensor:
        """A batch (B, L, D), each row from a view drawn for it, one read per view."""
        views = self.rng.integers(len(self.caches), size=len(rows))
        first = self.caches[0]
        out = torch.empty(len(rows), first.features.shape[1], first.dim, dtype=torch.float16)
        for view in np.unique(views):
            picked = np.flatnonzero(views == view)
            out[torch.from_numpy(picked)] = self.caches[view].take([rows[i] for i in picked])
        return out


def build_feature_cache(
    encoder: Encoder,
    image_paths: Sequence[Path],
    image_ids: Sequence[int],
    out_dir: Path,
    *,
    split: str,
    image_size: int,
    view: View = CLEAN,
    batch_size: int = 32,
    num_workers: int = 0,
) -> FeatureCache:
    """Encode every image once (eval mode, inference_mode) and write the split's cache."""
    if len(image_paths) != len(image_ids):
        raise ValueError(f"{len(image_paths)} image paths but {len(image_ids)} image ids")
    if len(set(image_ids)) != len(image_ids):
        raise ValueError("image ids must be unique")
    if not image_ids:
        raise ValueError("no images to encode")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    array_path, index_path = feature_paths(out_dir, split)
    grid = encoder.grid_size(image_size)
    shape = (len(image_ids), grid[0] * grid[1], encoder.out_dim)
    tmp_array = array_path.with_name(f".{array_path.name}.{os.getpid()}.tmp")
    tmp_index = index_path.with_name(f".{index_path.name}.{os.getpid()}.tmp")
    device = next(encoder.parameters()).device
    loader = DataLoader(
        ImageFiles(image_paths, image_size, view), batch_size=batch_size, num_workers=num_workers
    )
    was_training = encoder.training
    encoder.eval()
    try:
        features = np.lib.format.open_memmap(tmp_array, mode="w+", dtype=np.float16, shape=shape)
        row = 0
        with (
            torch.inference_mode(),
            tqdm(total=shape[0], desc=f"features {split}", unit="img") as bar,
        ):
            for images in loader:
                grids, _ = encode_in_chunks(encoder, images.to(device))  # (B, L, D)
                features[row : row + len(grids)] = grids.cpu().numpy().astype(np.float16)
                row += len(grids)
                bar.update(len(grids))
        features.flush()
        del features
        index = {
            "image_ids": [int(image_id) for image_id in image_ids],
            "encoder": encoder.name,
            "layers": list(encoder.layers),
            "image_size": image_size,
            "grid": list(grid),
            "dim": encoder.out_dim,
            "fingerprint": encoder_fingerprint(encoder, image_size) | view.fingerprint(),
        }
        tmp_index.write_text(json.dumps(index))
        # Invalidate the old index before its array changes; the new index lands last.
        index_path.unlink(missing_ok=True)
        os.replace(tmp_array, array_path)
        os.replace(tmp_index, index_path)
    finally:
        encoder.train(was_training)
        tmp_array.unlink(missing_ok=True)
        tmp_index.unlink(missing_ok=True)
    return FeatureCache.open(out_dir, split)


def load_or_build(
    encoder: Encoder,
    image_paths: Sequence[Path],
    image_ids: Sequence[int],
    out_dir: Path,
    *,
    split: str,
    image_size: int,
    view: View = CLEAN,
    batch_size: int = 32,
    num_workers: int = 0,
) -> FeatureCache:
    """Reuse the split's cache when encoder, weights, image size, view and ids all match."""
    try:
        cache = FeatureCache.open(out_dir, split)
    except FeatureCacheError:
        cache = None
    if (
        cache is not None
        and cache.fingerprint == encoder_fingerprint(encoder, image_size) | view.fingerprint()
        and cache.image_ids == [int(image_id) for image_id in image_ids]
    ):
        return cache
    return build_feature_cache(
        encoder,
        image_paths,
        image_ids,
        out_dir,
        split=split,
        image_size=image_size,
        view=view,
        batch_size=batch_size,
        num_workers=num_workers,
    )
