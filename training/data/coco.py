"""COCO captions: the Karpathy split file, COCO-format caption files, and a training dataset.

Three layouts of a data root are understood (`load_caption_split` picks one):
- Karpathy: `dataset_coco.json` at the root, images at `root/<filepath>/<filename>`
  (`train2014/`, `val2014/` for COCO); splits train, restval, val, test.
- COCO format with named splits, as the shapes world writes it:
  `annotations/captions_<split>.json` and `images/<split>/`.
- Plain COCO 2014/2017: `annotations/captions_<split><year>.json` and `<split><year>/`.
"""

import contextlib
import io
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Protocol

import torch
from PIL import Image
from pycocotools.coco import COCO
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import Dataset
from transformers import PreTrainedTokenizerFast

from models.text import EOS_ID, PAD_ID, build_tokenizer, encode

KARPATHY_FILE = "dataset_coco.json"
KARPATHY_SPLITS = ("train", "restval", "val", "test")
TRAINING_SPLITS = ("train", "restval")


class DatasetFormatError(ValueError):
    """A data set file is not in the format its loader reads."""


@dataclass
class CaptionRecord:
    """One image and its reference captions."""

    image_id: int
    path: Path
    captions: list[str]
    split: str


def _read_json(path: Path) -> object:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise DatasetFormatError(f"{path}: not valid JSON ({error})") from error


def _check_entries(path: Path, entries: object, name: str, fields: dict[str, type]) -> list:
    """Raise unless `entries` is a list of objects holding `fields` of the given types."""
    if not isinstance(entries, list):
        raise DatasetFormatError(f"{path}: {name!r} must be a list")
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise DatasetFormatError(f"{path}: {name}[{i}] is not an object")
        for field, kind in fields.items():
            if not isinstance(entry.get(field), kind) or isinstance(entry.get(field), bool):
                raise DatasetFormatError(
                    f"{path}: {name}[{i}] needs a {kind.__name__} field {field!r}"
                )
    return entries


def load_coco_captions(captions_json: Path, image_dir: Path, split: str) -> list[CaptionRecord]:
    """Images and captions of a COCO captions file (`images`, `annotations` with captions)."""
    data = _read_json(captions_json)
    if not isinstance(data, dict):
        raise DatasetFormatError(f"{captions_json}: expected an object with images, annotations")
    _check_entries(captions_json, data.get("images"), "images", {"id": int, "file_name": str})
    annotations = _check_entries(
        captions_json, data.get("annotations", []), "annotations", {"image_id": int, "caption": str}
    )
    image_ids = {image["id"] for image in data["images"]}
    orphans = [a["image_id"] for a in annotations if a["image_id"] not in image_ids]
    if orphans:
        raise DatasetFormatError(
            f"{captions_json}: {len(orphans)} captions name unknown images, e.g. {orphans[0]}"
        )
    data.setdefault("annotations", [])
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        coco.createIndex()
    return [
        CaptionRecord(
            image_id=image["id"],
            path=Path(image_dir) / image["file_name"],
            captions=[a["caption"] for a in coco.imgToAnns[image["id"]]],
            split=split,
        )
        for image in coco.loadImgs(coco.getImgIds())
    ]


def load_karpathy(
    dataset_json: Path, image_root: Path, split: str, *, fold_restval: bool = True
) -> list[CaptionRecord]:
    """One split of Karpathy's split file (`dataset_coco.json`, also Flickr8k/30k's).

    `restval` (the 30,504 COCO val2014 images outside Karpathy's val and test) is folded
    into `train` by default, as in Karpathy's and most later work; those records get split
    "train". With `fold_restval=False`, "train" is the 82,783 train2014 images only and
    "restval" can be loaded on its own. Captions are the `raw` sentences (the joined
    `tokens` where `raw` is absent); image ids are `cocoid` (Flickr: `imgid`).
    """
    if split not in KARPATHY_SPLITS:
        raise ValueError(f"Karpathy split must be one of {KARPATHY_SPLITS}, got {split!r}")
    wanted = {split, "restval"} if split == "train" and fold_restval else {split}
    data = _read_json(dataset_json)
    images = data.get("images") if isinstance(data, dict) else None
    _check_entries(dataset_json, images, "images", {"filename": str, "split": str})
    records = []
    for i, image in enumerate(images):
        if image["split"] not in wanted:
            continue
        image_id = image.get("cocoid", image.get("imgid"))
        sentences = image.get("sentences", [])
        if not isinstance(image_id, int) or not isinstance(sentences, list):
            raise DatasetFormatError(
                f"{dataset_json}: images[{i}] needs an integer cocoid (or imgid) and sentences"
            )
        records.append(
            CaptionRecord(
                image_id=image_id,
                path=Path(image_root) / image.get("filepath", "") / image["filename"],
                captions=[_sentence_text(dataset_json, i, s) for s in sentences],
                split=split,
            )
        )
    return records


def _sentence_text(path: Path, image_index: int, sentence: object) -> str:
    if isinstance(sentence, dict) and isinstance(sentence.get("raw"), str):
        return sentence["raw"]
    if isinstance(sentence, dict) and isinstance(sentence.get("tokens"), list):
        return " ".join(str(token) for token in sentence["tokens"])
    raise DatasetFormatError(f"{path}: a sentence of images[{image_index}] has no raw or tokens")


def load_caption_split(root: Path, split: str) -> list[CaptionRecord]:
    """One split of a caption data root, whichever of the three layouts it has."""
    root = Path(root)
    if (root / KARPATHY_FILE).is_file():
        return load_karpathy(root / KARPATHY_FILE, root, split)
    named = root / "annotations" / f"captions_{split}.json"
    if named.is_file():
        return load_coco_captions(named, root / "images" / split, split)
    for year in ("2014", "2017"):
        plain = root / "annotations" / f"captions_{split}{year}.json"
        if plain.is_file():
            return load_coco_captions(plain, root / f"{split}{year}", split)
    raise FileNotFoundError(
        f"no captions for split {split!r} under {root}: expected {KARPATHY_FILE}, "
        f"annotations/captions_{split}.json or annotations/captions_{split}2014.json"
    )


def build_vocabulary(
    records: Iterable[CaptionRecord], min_count: int = 5
) -> PreTrainedTokenizerFast:
    """Word tokenizer of the training captions: words seen at least `min_count` times.

    Rarer words become <unk>. Karpathy's threshold for COCO is 5 (about 9,500 words); for the
    shapes world every word is frequent. Only training records are accepted, so that
    validation words never leak into the vocabulary.
    """
    records = list(records)
    leaked = {r.split for r in records} - set(TRAINING_SPLITS)
    if leaked:
        raise ValueError(f"vocabulary must come from training records, got splits {leaked}")
    return build_tokenizer((c for r in records for c in r.captions), min_count=min_count)


class FeatureStore(Protocol):
    """Cached encoder grids by image id (`training.features.FeatureCache` is one)."""

    def row(self, image_id: int) -> int: ...

    def __getitem__(self, row: int) -> Tensor: ...

    def take(self, rows: Sequence[int]) -> Tensor: ...


class ImageSource:
    """The image side of an example: a cached grid (L, D) or a transformed image (3, H, W)."""

    def __init__(
        self,
        features: FeatureStore | None = None,
        transform: Callable[[Image.Image], Tensor] | None = None,
    ) -> None:
        if (features is None) == (transform is None):
            raise ValueError("give exactly one of features (cached grids) or transform (images)")
        self.features, self.transform = features, transform

    def __call__(self, image_id: int, path: Path) -> Tensor:
        if self.features is not None:
            return self.features[self.features.row(image_id)]  # (L, D)
        with Image.open(path) as image:
            return self.transform(image.convert("RGB"))  # (3, H, W)

    def many(self, image_ids: Sequence[int], paths: Sequence[Path]) -> Tensor:
        """A batch's image side at once: cached grids are gathered in one read."""
        if self.features is not None:
            return self.features.take([self.features.row(i) for i in image_ids])  # (B, L, D)
        return torch.stack([self(i, p) for i, p in zip(image_ids, paths, strict=True)])


class CaptionDataset(Dataset):
    """(image side, caption ids, image id), one example per (image, caption) pair.

    Caption ids are <bos> words <eos>, cut to `max_length` ids in all with <eos> kept last.
    """

    def __init__(
        self,
        records: Sequence[CaptionRecord],
        tokenizer: PreTrainedTokenizerFast,
        *,
        features: FeatureStore | None = None,
        transform: Callable[[Image.Image], Tensor] | None = None,
        max_length: int = 32,
    ) -> None:
        if max_length < 3:
            raise ValueError(f"max_length must leave room for a word, got {max_length}")
        self.records, self.tokenizer, self.max_length = list(records), tokenizer, max_length
        self.source = ImageSource(features, transform)
        self.pairs = [
            (r, c) for r, record in enumerate(self.records) for c in range(len(record.captions))
        ]
        # Tokenised once, not every epoch.
        self.caption_ids = [self._encode(self.records[r].captions[c]) for r, c in self.pairs]

    def _encode(self, caption: str) -> Tensor:
        ids = encode(self.tokenizer, caption)
        if len(ids) > self.max_length:
            ids = [*ids[: self.max_length - 1], EOS_ID]
        return torch.tensor(ids, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor, int]:
        record = self.records[self.pairs[index][0]]
        image = self.source(record.image_id, record.path)
        return image, self.caption_ids[index], record.image_id

    def batch(self, indices: Sequence[int], pad_id: int = PAD_ID) -> "CaptionBatch":
        """`collate_captions` of these examples, reading their cached grids in one gather."""
        records = [self.records[self.pairs[i][0]] for i in indices]
        captions = [self.caption_ids[i] for i in indices]
        return CaptionBatch(
            inputs=self.source.many([r.image_id for r in records], [r.path for r in records]),
            captions=pad_sequence(captions, batch_first=True, padding_value=pad_id),
            lengths=torch.tensor([len(c) for c in captions], dtype=torch.long),
            image_ids=torch.tensor([r.image_id for r in records], dtype=torch.long),
        )


class CaptionBatch(NamedTuple):
    inputs: Tensor  # (B, L, D) grids or (B, 3, H, W) images
    captions: Tensor  # (B, T) ids, padded with pad_id
    lengths: Tensor  # (B,) caption lengths with <bos> and <eos>
    image_ids: Tensor  # (B,)


def collate_captions(
    batch: Sequence[tuple[Tensor, Tensor, int]], pad_id: int = PAD_ID
) -> CaptionBatch:
    """Pad captions to the longest in the batch; sorting and packing are the training step's."""
    inputs, captions, image_ids = zip(*batch, strict=True)
    return CaptionBatch(
        inputs=torch.stack(inputs),
        captions=pad_sequence(list(captions), batch_first=True, padding_value=pad_id),
        lengths=torch.tensor([len(c) for c in captions], dtype=torch.long),
        image_ids=torch.tensor(image_ids, dtype=torch.long),
    )
