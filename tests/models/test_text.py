from pathlib import Path

from models.text import (
    BOS_ID,
    EOS_ID,
    UNK_ID,
    build_tokenizer,
    decode,
    encode,
    load_tokenizer,
    save_tokenizer,
    words,
)


def test_words_lowercase_and_split_punctuation() -> None:
    assert words("A Red circle, left of the BLUE square.") == [
        "a",
        "red",
        "circle",
        "left",
        "of",
        "the",
        "blue",
        "square",
    ]


def test_rare_words_become_unknown_and_specials_frame_captions() -> None:
    tokenizer = build_tokenizer(["a red circle", "a blue circle", "a star"], min_count=2)
    assert set(tokenizer.get_vocab()) == {"<pad>", "<bos>", "<eos>", "<unk>", "a", "circle"}
    ids = encode(tokenizer, "A red circle")
    assert ids[0] == BOS_ID and ids[-1] == EOS_ID and ids[2] == UNK_ID
    assert decode(tokenizer, ids) == ["a", "<unk>", "circle"]


def test_decode_stops_at_eos() -> None:
    tokenizer = build_tokenizer(["a red circle"])
    ids = encode(tokenizer, "a red circle") + encode(tokenizer, "circle", add_special=False)
    assert decode(tokenizer, ids) == ["a", "red", "circle"]


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    tokenizer = build_tokenizer(["what color is the large square ?"])
    save_tokenizer(tokenizer, tmp_path / "tokenizer.json")
    loaded = load_tokenizer(tmp_path / "tokenizer.json")
    assert loaded.get_vocab() == tokenizer.get_vocab()
    text = "What COLOR is the square?"
    assert encode(loaded, text) == encode(tokenizer, text)
