"""A synthetic data set of COCO's shape and size, for scale tests of the caption pipeline.

COCO cannot be downloaded everywhere, yet the loaders, the vocabulary, the feature cache, the
loops and memory must be proven at COCO's size. This writes what the Karpathy-split readers
read, at the real size by default:
- `dataset_coco.json` in the exact format of Karpathy's file: `images[]` of
  `{filepath, sentids, filename, imgid, split, sentences[{tokens, raw, imgid, sentid}], cocoid}`
  and `"dataset": "coco"`; the splits 82,783 train + 30,504 restval + 5,000 val + 5,000 test,
  restval and val/test images in `val2014/` as in COCO 2014; 5 captions an image (a few 6 or
  7: the real file has 616,767 sentences for 123,287 images);
- optionally a tiny flat-colour JPEG per image (`train2014/`, `val2014/`), so that the
  encoder and the feature cache can run on the real number of files;
- captions of made-up words (syllable combinations) with COCO's statistics: Zipf-Mandelbrot
  word frequencies over 40,000 word types, fitted so that about 9,500 words are seen at least
  5 times in the training split (Karpathy's vocabulary), with a long tail of rarer ones, and
  lengths of mean ~10.6 words, 89% within 8-15, a few up to 50.
The words mean nothing, so a model trained on them learns nothing; what it measures is cost.
`write_random_grids` writes random fp16 grids in the feature cache's format, for measuring
reads at the real grid shape without an encoder pass.
"""

import io
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

KARPATHY_SPLIT_SIZES = {"train": 82_783, "restval": 30_504, "val": 5_000, "test": 5_000}
COCO_TRAIN_IMAGES = KARPATHY_SPLIT_SIZES["train"] + KARPATHY_SPLIT_SIZES["restval"]  # 113,287
MAX_COCO_ID = 581_929  # the largest COCO 2014 image id; ids are drawn below it
MAX_SENTENCE_ID = 830_000  # COCO caption annotation ids stay below this

# Word frequencies p_k ~ (k + OFFSET)^-EXPONENT over WORD_TYPES words (Zipf-Mandelbrot; 2.7 is
# Mandelbrot's offset). The exponent was solved for expected_vocabulary_size(tokens of the
# 113,287 training images, 5) = 9,500; it also puts ~14% of tokens on the top word ("a" in COCO).
WORD_TYPES = 40_000
ZIPF_OFFSET = 2.7
ZIPF_EXPONENT = 1.5551

# Caption lengths in words: most are 6 + Poisson(4.3); TAIL_SHARE are long, 15 + Geometric(0.18),
# capped at MAX_WORDS. Mean ~10.6, 89% within 8..15, as COCO's (mean ~10.5, a few up to ~50).
BODY_MIN_WORDS = 6
BODY_EXTRA_MEAN = 4.3
TAIL_SHARE = 0.03
TAIL_START = 15
TAIL_GEOMETRIC_P = 0.18
MAX_WORDS = 50

# Captions an image: 5, with a few 6 and 7 (616,767 sentences for 123,287 images in the real file).
CAPTIONS_PER_IMAGE = (5, 6, 7)
CAPTIONS_PER_IMAGE_P = (0.9973, 0.0025, 0.0002)

_ONSETS = [*"bcdfghjklmnprstvwz", "br", "ch", "dr", "gl", "pl", "sh", "st", "tr"]
_VOWELS = [*"aeiou"]
_CODAS = ["", "n", "r", "s", "l", "t"]


@dataclass(frozen=True)
class SyntheticCoco:
    """What `generate_synthetic_coco` wrote."""

    root: Path
    split_images: dict[str, int]  # Karpathy split -> images
    sentences: int
    tokens: int


def split_sizes(train: int, val: int, test: int) -> dict[str, int]:
    """Karpathy splits for `train` training images: train2014 and restval in COCO's ratio.

    Raises ValueError on sizes that cannot make a data set.
    """
    for name, size in (("train", train), ("val", val), ("test", test)):
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {size!r}")
    if train < 1:
        raise ValueError("train must hold at least one image")
    restval = round(train * KARPATHY_SPLIT_SIZES["restval"] / COCO_TRAIN_IMAGES)
    return {"train": train - restval, "restval": restval, "val": val, "test": test}


def make_words(count: int = WORD_TYPES, seed: int = 0) -> list[str]:
    """`count` distinct lower-case made-up words, shortest first (frequent words are short).

    One-syllable words come first, then two-syllable ones, each group in a seeded order.
    """
    syllables = [o + v + c for o in _ONSETS for v in _VOWELS for c in _CODAS]
    n = len(syllables)
    rng = np.random.default_rng([seed, 1])
    pairs = rng.permutation(n * n)[: 2 * count].tolist()  # enough even after duplicates
    candidates = [syllables[i] for i in rng.permutation(n)]
    candidates += [syllables[p // n] + syllables[p % n] for p in pairs]
    unique = list(dict.fromkeys(candidates))  # two splits can spell one word ("bas|ta", "ba|sta")
    if count > len(unique):
        raise ValueError(f"at most {len(unique)} made-up words, asked for {count}")
    return unique[:count]


def word_probabilities(count: int = WORD_TYPES) -> np.ndarray:
    """Zipf-Mandelbrot probabilities of the words by frequency rank, (count,) summing to 1."""
    weights = (np.arange(1, count + 1) + ZIPF_OFFSET) ** -ZIPF_EXPONENT
    return weights / weights.sum()


def expected_vocabulary_size(tokens: int, min_count: int, count: int = WORD_TYPES) -> float:
    """Expected number of words seen at least `min_count` times among `tokens` sampled words.

    Each word's count is close to Poisson(tokens * p_k), so the expectation is the sum over
    words of P(Poisson >= min_count): what `build_vocabulary` should find on these captions.
    """
    rates = tokens * word_probabilities(count)  # (count,)
    below = np.zeros_like(rates)
    term = np.exp(-rates)  # P(X = 0)
    for j in range(min_count):
        below += term
        term = term * rates / (j + 1)  # P(X = j + 1)
    return float(np.sum(1.0 - below))


def caption_lengths(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n,) words per caption, COCO-like: mostly 8-15, mean ~10.6, a few up to MAX_WORDS."""
    body = BODY_MIN_WORDS + rng.poisson(BODY_EXTRA_MEAN, n)
    tail = np.minimum(TAIL_START + rng.geometric(TAIL_GEOMETRIC_P, n), MAX_WORDS)
    return np.where(rng.random(n) < TAIL_SHARE, tail, body)


def _split_order(rng: np.random.Generator, sizes: dict[str, int]) -> list[tuple[str, str]]:
    """(split, folder) per image: the val2014 images (val, test and restval mixed) first, then
    the train2014 ones, the order of Karpathy's file."""
    val2014 = ["val"] * sizes["val"] + ["test"] * sizes["test"] + ["restval"] * sizes["restval"]
    mixed = [val2014[i] for i in rng.permutation(len(val2014))]
    return [(split, "val2014") for split in mixed] + [("train", "train2014")] * sizes["train"]


def generate_synthetic_coco(
    out: Path,
    train: int = COCO_TRAIN_IMAGES,
    val: int = KARPATHY_SPLIT_SIZES["val"],
    test: int = KARPATHY_SPLIT_SIZES["test"],
    *,
    image_size: int = 32,
    images: bool = True,
    seed: int = 0,
) -> SyntheticCoco:
    """Write `out/dataset_coco.json` (and tiny JPEGs) for a Karpathy-split COCO of this size.

    Deterministic in (sizes, seed). The JSON is streamed image by image and lands atomically,
    so memory stays small at the full size and a stopped run leaves no half file behind.
    """
    if images and not 8 <= image_size <= 1024:
        raise ValueError(f"image_size must be within 8..1024 pixels, got {image_size}")
    sizes = split_sizes(train, val, test)
    rng = np.random.default_rng(seed)
    order = _split_order(rng, sizes)
    n = len(order)
    cocoids = rng.permutation(max(MAX_COCO_ID, n))[:n] + 1
    per_image = rng.choice(CAPTIONS_PER_IMAGE, size=n, p=CAPTIONS_PER_IMAGE_P)
    lengths = caption_lengths(rng, int(per_image.sum()))
    word_ids = rng.choice(WORD_TYPES, size=int(lengths.sum()), p=word_probabilities())
    sentids = rng.permutation(max(MAX_SENTENCE_ID, len(lengths)))[: len(lengths)] + 1
    palette = _jpeg_palette(rng, image_size) if images else []
    colour_of = rng.integers(0, len(palette) or 1, size=n)
    vocabulary = np.array(make_words(WORD_TYPES, seed), dtype=object)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if images:
        for folder in ("train2014", "val2014"):
            (out / folder).mkdir(exist_ok=True)
    target = out / "dataset_coco.json"
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    captions = _captions_by_image(per_image, lengths, word_ids, vocabulary)
    first_sentence = np.cumsum(per_image) - per_image
    try:
        with tmp.open("w", encoding="utf-8") as stream:
            stream.write('{"images": [')
            for i, ((split, folder), tokens) in enumerate(zip(order, captions, strict=True)):
                ids = sentids[first_sentence[i] : first_sentence[i] + per_image[i]]
                entry = _karpathy_entry(
                    i, int(cocoids[i]), split, folder, tokens, sorted(ids.tolist())
                )
                stream.write((", " if i else "") + json.dumps(entry))
                if images:
                    (out / folder / entry["filename"]).write_bytes(palette[colour_of[i]])
            stream.write('], "dataset": "coco"}')
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return SyntheticCoco(out, sizes, len(lengths), int(lengths.sum()))


def _captions_by_image(
    per_image: np.ndarray, lengths: np.ndarray, word_ids: np.ndarray, words: np.ndarray
) -> Iterator[list[list[str]]]:
    """Each image's captions as word lists, cut from one flat array of word ids."""
    ends = np.cumsum(lengths)
    first = 0
    for count in per_image.tolist():
        cuts = zip(ends[first : first + count], lengths[first : first + count], strict=True)
        yield [words[word_ids[end - length : end]].tolist() for end, length in cuts]
        first += count


def _karpathy_entry(
    imgid: int, cocoid: int, split: str, folder: str, tokens: list[list[str]], sentids: list[int]
) -> dict:
    """One image of Karpathy's file, keys in the file's order."""
    raws = [" ".join(words) for words in tokens]
    raws = [f"{raw[:1].upper()}{raw[1:]}." for raw in raws]  # "Word word word." as COCO writes
    return {
        "filepath": folder,
        "sentids": sentids,
        "filename": f"COCO_{folder}_{cocoid:012d}.jpg",
        "imgid": imgid,
        "split": split,
        "sentences": [
            {"tokens": words, "raw": raw, "imgid": imgid, "sentid": s}
            for words, raw, s in zip(tokens, raws, sentids, strict=True)
        ],
        "cocoid": cocoid,
    }


def _jpeg_palette(rng: np.random.Generator, size: int, colours: int = 64) -> list[bytes]:
    """Flat-colour JPEG files, encoded once: writing 123k images then costs file writes only."""
    palette = []
    for colour in rng.integers(0, 256, size=(colours, 3)):
        buffer = io.BytesIO()
        Image.new("RGB", (size, size), tuple(int(c) for c in colour)).save(buffer, "JPEG")
        palette.append(buffer.getvalue())
    return palette


def write_random_grids(
    out_dir: Path,
    split: str,
    image_ids: list[int],
    grid: tuple[int, int],
    dim: int,
    *,
    seed: int = 0,
    chunk: int = 256,
) -> Path:
    """Random fp16 grids in `training.features`' cache format; returns the array's path.

    Reading (L, D) rows from the memory map costs the same whatever the values, so a scale
    test of the data side needs no encoder pass. The fingerprint names no encoder, so
    `load_or_build` never mistakes these grids for an encoder's and rebuilds instead.
    """
    from training.features import feature_paths  # torch: only this function needs it

    if not image_ids or len(set(image_ids)) != len(image_ids):
        raise ValueError("image ids must be a non-empty list of unique ids")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    array_path, index_path = feature_paths(out_dir, split)
    shape = (len(image_ids), grid[0] * grid[1], dim)
    rng = np.random.default_rng(seed)
    features = np.lib.format.open_memmap(array_path, mode="w+", dtype=np.float16, shape=shape)
    for start in range(0, shape[0], chunk):
        rows = min(chunk, shape[0] - start)
        values = rng.random((rows, *shape[1:]), dtype=np.float32)  # (rows, L, D)
        features[start : start + rows] = values.astype(np.float16)
    features.flush()
    del features
    index = {
        "image_ids": [int(i) for i in image_ids],
        "encoder": "random",
        "layers": [],
        "image_size": 0,
        "grid": list(grid),
        "dim": dim,
        "fingerprint": {"encoder": "random", "seed": seed},
    }
    index_path.write_text(json.dumps(index))
    return array_path
