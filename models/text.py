"""Word-level tokenizer, built with `tokenizers` and saved as `tokenizer.json`.

Show-Attend-Tell and the VQA baselines work on words, not sub-words: attention maps are
shown per word, so a word must be one token. Wrapping the `tokenizers` object as a
`transformers.PreTrainedTokenizerFast` lets users load it the way they load any HF tokenizer.
"""

from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from tokenizers import Tokenizer, normalizers, pre_tokenizers
from tokenizers.models import WordLevel
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence
from transformers import PreTrainedTokenizerFast

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIALS = (PAD, BOS, EOS, UNK)  # ids 0, 1, 2, 3 in every vocabulary
PAD_ID, BOS_ID, EOS_ID, UNK_ID = range(4)


def _splitter() -> tuple[normalizers.Normalizer, pre_tokenizers.PreTokenizer]:
    """Lower-case, strip accents, split on whitespace and punctuation (COCO's convention)."""
    normalizer = normalizers.Sequence(
        [normalizers.NFD(), normalizers.StripAccents(), normalizers.Lowercase()]
    )
    pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation(behavior="removed")]
    )
    return normalizer, pre_tokenizer


_NORMALIZER, _PRE_TOKENIZER = _splitter()


def words(text: str) -> list[str]:
    """The word split every caption and question goes through, for counting and scoring."""
    normalized = _NORMALIZER.normalize_str(text)
    return [w for w, _ in _PRE_TOKENIZER.pre_tokenize_str(normalized)]


def build_tokenizer(texts: Iterable[str], min_count: int = 1) -> PreTrainedTokenizerFast:
    """Vocabulary of the words seen at least `min_count` times; rarer words map to <unk>."""
    counts = Counter(w for text in texts for w in words(text))
    kept = sorted(w for w, n in counts.items() if n >= min_count)
    vocab = {token: i for i, token in enumerate((*SPECIALS, *kept))}
    tokenizer = Tokenizer(WordLevel(vocab=vocab, unk_token=UNK))
    tokenizer.normalizer, tokenizer.pre_tokenizer = _splitter()
    return wrap(tokenizer)


def wrap(tokenizer: Tokenizer) -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token=PAD, bos_token=BOS, eos_token=EOS, unk_token=UNK
    )


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerFast:
    """Load a `tokenizer.json` written by `save_tokenizer`."""
    return wrap(Tokenizer.from_file(str(path)))


def save_tokenizer(tokenizer: PreTrainedTokenizerFast, path: str | Path) -> None:
    tokenizer.backend_tokenizer.save(str(path))


def encode(tokenizer: PreTrainedTokenizerFast, text: str, add_special: bool = True) -> list[int]:
    """Word ids of `text`, framed by <bos> ... <eos> for the caption decoder."""
    ids = tokenizer.backend_tokenizer.encode(text, add_special_tokens=False).ids
    return [BOS_ID, *ids, EOS_ID] if add_special else ids


def pad_questions(questions: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
    """Questions' ids padded with <pad> to the longest, and their lengths: (Q, T), (Q,)."""
    padded = pad_sequence(list(questions), batch_first=True, padding_value=PAD_ID)  # (Q, T)
    lengths = torch.tensor([len(q) for q in questions], dtype=torch.long)  # (Q,)
    return padded, lengths


def decode(tokenizer: PreTrainedTokenizerFast, ids: Iterable[int]) -> list[str]:
    """Words for ids, stopping at <eos> and skipping the other special tokens (and any id
    outside the vocabulary, which no head can emit)."""
    vocabulary = tokenizer.backend_tokenizer
    out = []
    for i in ids:
        if i == EOS_ID:
            break
        if i >= len(SPECIALS) or i == UNK_ID:
            word = vocabulary.id_to_token(int(i))
            if word is not None:
                out.append(word)
    return out
