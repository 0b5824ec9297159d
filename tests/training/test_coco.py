"""COCO caption loaders (Karpathy split, COCO format) and the caption training dataset."""

import json
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader
from torchvision.transforms import v2

from models.text import BOS_ID, EOS_ID, PAD_ID, UNK_ID, decode
from training.data.coco import (
    CaptionDataset,
    DatasetFormatError,
    build_vocabulary,
    collate_captions,
    load_caption_split,
    load_coco_captions,
    load_karpathy,
)
from training.features import FeatureCache

# Karpathy images: (cocoid, filepath, split, raw captions)
KARPATHY_IMAGES = [
    (11, "train2014", "train", ["A red bus on a street.", "a red bus parked"]),
    (12, "train2014", "train", ["Two dogs play in the grass."]),
    (21, "val2014", "restval", ["A bus and a dog."]),
    (22, "val2014", "val", ["A cat on a sofa."]),
    (23, "val2014", "test", ["A zebra eats grass."]),
]


def _write_image(path: Path, colour: tuple[int, int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (12, 10), colour).save(path)


def _karpathy_entry(cocoid: int, filepath: str, split: str, captions: list[str]) -> dict:
    prefix = f"COCO_{filepath}_"
    return {
        "filepath": filepath,
        "filename": f"{prefix}{cocoid:012d}.jpg",
        "imgid": cocoid - 10,
        "split": split,
        "sentences": [
            {"tokens": raw.lower().rstrip(".").split(), "raw": raw, "imgid": cocoid - 10}
            for raw in captions
        ],
        "cocoid": cocoid,
    }


def _coco_captions(images: dict[int, str], captions: list[tuple[int, str]]) -> dict:
    return {
        "info": {"description": "test"},
        "images": [
            {"id": i, "file_name": name, "width": 12, "height": 10} for i, name in images.items()
        ],
        "annotations": [
            {"id": n, "image_id": image_id, "caption": text}
            for n, (image_id, text) in enumerate(captions)
        ],
    }


@pytest.fixture(scope="module")
def karpathy_fixture_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Karpathy layout: dataset_coco.json plus train2014/ and val2014/ JPEG images."""
    root = tmp_path_factory.mktemp("karpathy")
    entries = [_karpathy_entry(*image) for image in KARPATHY_IMAGES]
    for entry in entries:
        _write_image(root / entry["filepath"] / entry["filename"], (200, 30, 30))
    (root / "dataset_coco.json").write_text(json.dumps({"images": entries, "dataset": "coco"}))
    return root


@pytest.fixture(scope="module")
def coco_fixture_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """COCO-format layouts: named splits (shapes world) and plain captions_val2014.json."""
    root = tmp_path_factory.mktemp("coco")
    named = {1: "000000000001.png", 2: "000000000002.png", 3: "000000000003.png"}
    for image_id, name in named.items():
        _write_image(root / "images" / "train" / name, (10 * image_id, 120, 200))
    captions = [
        (1, "a red circle"),
        (2, "a blue square"),
        (1, "a large red circle"),
        (2, "two shapes: a blue square"),
    ]
    (root / "annotations").mkdir()
    (root / "annotations" / "captions_train.json").write_text(
        json.dumps(_coco_captions(named, captions))
    )
    plain = {42: "COCO_val2014_000000000042.jpg"}
    _write_image(root / "val2014" / plain[42], (90, 90, 90))
    (root / "annotations" / "captions_val2014.json").write_text(
        json.dumps(_coco_captions(plain, [(42, "A man riding a horse.")]))
    )
    return root


@pytest.fixture(scope="module")
def coco_train_records(coco_fixture_dir: Path):
    return load_caption_split(coco_fixture_dir, "train")


def test_karpathy_train_folds_restval(karpathy_fixture_dir: Path) -> None:
    records = load_karpathy(
        karpathy_fixture_dir / "dataset_coco.json", karpathy_fixture_dir, "train"
    )
    assert [r.image_id for r in records] == [11, 12, 21]
    assert {r.split for r in records} == {"train"}
    assert records[0].captions == ["A red bus on a street.", "a red bus parked"]
    assert records[2].path == karpathy_fixture_dir / "val2014" / "COCO_val2014_000000000021.jpg"
    assert all(r.path.is_file() for r in records)


def test_karpathy_restval_kept_apart(karpathy_fixture_dir: Path) -> None:
    dataset_json = karpathy_fixture_dir / "dataset_coco.json"
    train = load_karpathy(dataset_json, karpathy_fixture_dir, "train", fold_restval=False)
    restval = load_karpathy(dataset_json, karpathy_fixture_dir, "restval", fold_restval=False)
    assert [r.image_id for r in train] == [11, 12]
    assert [r.image_id for r in restval] == [21]
    with pytest.raises(ValueError, match="Karpathy split"):
        load_karpathy(dataset_json, karpathy_fixture_dir, "minival")


def test_karpathy_layout_detected(karpathy_fixture_dir: Path) -> None:
    assert [r.image_id for r in load_caption_split(karpathy_fixture_dir, "val")] == [22]
    assert [r.captions for r in load_caption_split(karpathy_fixture_dir, "test")] == [
        ["A zebra eats grass."]
    ]


def test_karpathy_tokens_used_without_raw(tmp_path: Path) -> None:
    entry = _karpathy_entry(5, "val2014", "val", ["A Cat."])
    del entry["sentences"][0]["raw"]
    (tmp_path / "dataset_coco.json").write_text(json.dumps({"images": [entry]}))
    assert load_caption_split(tmp_path, "val")[0].captions == ["a cat"]


def test_coco_named_split_groups_captions(coco_train_records) -> None:
    by_id = {r.image_id: r for r in coco_train_records}
    assert by_id[1].captions == ["a red circle", "a large red circle"]
    assert by_id[2].captions == ["a blue square", "two shapes: a blue square"]
    assert by_id[3].captions == []  # an image without captions stays, with none
    assert by_id[3].path.name == "000000000003.png" and by_id[3].path.is_file()
    assert {r.split for r in coco_train_records} == {"train"}


def test_plain_coco_2014_layout(coco_fixture_dir: Path) -> None:
    (record,) = load_caption_split(coco_fixture_dir, "val")
    assert record.image_id == 42 and record.captions == ["A man riding a horse."]
    assert record.path == coco_fixture_dir / "val2014" / "COCO_val2014_000000000042.jpg"


def test_missing_split_names_the_layouts(coco_fixture_dir: Path) -> None:
    with pytest.raises(FileNotFoundError, match="captions_test.json"):
        load_caption_split(coco_fixture_dir, "test")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[]", "expected an object"),
        (json.dumps({"images": [{"id": 1}]}), "file_name"),
        (
            json.dumps(
                {"images": [{"id": 1, "file_name": "a.png"}], "annotations": [{"image_id": 1}]}
            ),
            "caption",
        ),
        (json.dumps(_coco_captions({1: "a.png"}, [(7, "orphan")])), "unknown images"),
    ],
)
def test_bad_coco_file_raises_format_error(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "captions.json"
    path.write_text(content)
    with pytest.raises(DatasetFormatError, match=message):
        load_coco_captions(path, tmp_path, "train")


def test_vocabulary_keeps_words_seen_min_count_times(coco_train_records) -> None:
    # "red", "circle", "blue", "square", "a" appear twice or more; "large", "two", "shapes" once.
    tokenizer = build_vocabulary(coco_train_records, min_count=2)
    vocab = tokenizer.get_vocab()
    assert {"red", "circle", "blue", "square", "a"} <= set(vocab)
    assert not {"large", "two", "shapes", ":"} & set(vocab)
    assert tokenizer.convert_tokens_to_ids("large") == UNK_ID


def test_vocabulary_refuses_validation_records(karpathy_fixture_dir: Path) -> None:
    val = load_caption_split(karpathy_fixture_dir, "val")
    with pytest.raises(ValueError, match="training records"):
        build_vocabulary(val, min_count=1)


@pytest.fixture(scope="module")
def coco_feature_cache(coco_train_records) -> FeatureCache:
    """A real feature cache over the 3 training images, row r filled with the value r + 1."""
    ids = [r.image_id for r in reversed(coco_train_records)]  # rows not in record order
    grids = np.stack([np.full((4, 3), row + 1, dtype=np.float16) for row in range(len(ids))])
    return FeatureCache(grids, ids, grid=(2, 2), dim=3, fingerprint={})


def test_caption_dataset_pairs_features_and_caption_ids(
    coco_train_records, coco_feature_cache: FeatureCache
) -> None:
    tokenizer = build_vocabulary(coco_train_records, min_count=1)
    dataset = CaptionDataset(coco_train_records, tokenizer, features=coco_feature_cache)
    assert len(dataset) == 4  # one example per caption; image 3 has none
    seen = set()
    for grid, ids, image_id in dataset:
        assert grid.shape == (4, 3) and grid.dtype == torch.float32
        assert torch.all(grid == coco_feature_cache.row(image_id) + 1)
        assert ids.dtype == torch.long and ids[0] == BOS_ID and ids[-1] == EOS_ID
        seen.add((image_id, " ".join(decode(tokenizer, ids[1:].tolist()))))
    assert (2, "two shapes a blue square") in seen
    assert (1, "a large red circle") in seen


def test_caption_truncated_keeps_eos(coco_train_records, coco_feature_cache) -> None:
    tokenizer = build_vocabulary(coco_train_records, min_count=1)
    dataset = CaptionDataset(
        coco_train_records, tokenizer, features=coco_feature_cache, max_length=4
    )
    lengths = sorted(len(ids) for _, ids, _ in dataset)
    assert lengths == [4, 4, 4, 4]  # every caption has at least 3 words
    _, ids, _ = dataset[1]  # "a large red circle"
    assert decode(tokenizer, ids[1:].tolist()) == ["a", "large"]
    assert ids[-1] == EOS_ID


def test_caption_dataset_reads_images(coco_train_records, karpathy_fixture_dir: Path) -> None:
    transform = v2.Compose(
        [v2.PILToTensor(), v2.Resize((8, 8)), v2.ToDtype(torch.float32, scale=True)]
    )
    tokenizer = build_vocabulary(coco_train_records)
    karpathy = load_caption_split(karpathy_fixture_dir, "train")  # JPEG images
    for records in (coco_train_records, karpathy):
        image, _, image_id = CaptionDataset(records, tokenizer, transform=transform)[0]
        assert image.shape == (3, 8, 8)
        expected = Image.open(records[0].path).convert("RGB").getpixel((0, 0))[0] / 255
        assert image[0, 0, 0].item() == pytest.approx(expected, abs=0.03)


def test_caption_dataset_needs_one_image_source(coco_train_records, coco_feature_cache) -> None:
    tokenizer = build_vocabulary(coco_train_records)
    with pytest.raises(ValueError, match="exactly one"):
        CaptionDataset(coco_train_records, tokenizer)
    with pytest.raises(ValueError, match="exactly one"):
        CaptionDataset(
            coco_train_records, tokenizer, features=coco_feature_cache, transform=lambda x: x
        )


def test_collate_pads_to_longest(coco_train_records, coco_feature_cache) -> None:
    tokenizer = build_vocabulary(coco_train_records)
    dataset = CaptionDataset(coco_train_records, tokenizer, features=coco_feature_cache)
    loader = DataLoader(dataset, batch_size=4, collate_fn=partial(collate_captions, pad_id=PAD_ID))
    batch = next(iter(loader))
    expected_lengths = [len(dataset[i][1]) for i in range(4)]
    assert batch.inputs.shape == (4, 4, 3)
    assert batch.lengths.tolist() == expected_lengths
    assert batch.captions.shape == (4, max(expected_lengths))
    for row, length in enumerate(expected_lengths):
        assert batch.captions[row, length - 1] == EOS_ID
        assert torch.all(batch.captions[row, length:] == PAD_ID)
    assert batch.image_ids.tolist() == [dataset[i][2] for i in range(4)]


def test_gathered_batch_equals_collated_items(coco_train_records, coco_feature_cache) -> None:
    dataset = CaptionDataset(
        coco_train_records, build_vocabulary(coco_train_records), features=coco_feature_cache
    )
    indices = [3, 0, 2]
    gathered = dataset.batch(indices)
    collated = collate_captions([dataset[i] for i in indices])
    assert gathered.inputs.dtype == torch.float16  # as cached: the model converts it
    assert torch.equal(gathered.inputs.float(), collated.inputs)
    for got, expected in zip(gathered[1:], collated[1:], strict=True):
        assert torch.equal(got, expected)
