"""The captioner's tokenizer: byte-level BPE trained on the corpus's captions, titles and
folder names (`tokenizers`), with special tokens that tag the metadata fields.

The encoder's metadata text reads `<title> siren high <folder> vehicles / sirens`; a field
that is missing is left out with its tag. The captions of similar training clips follow as
`<similar> a siren wails <similar> ...` (`bank.py`). Captions are lowercased; decoding strips
the byte-level marks.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

TOKENIZER_FILE = "tokenizer.json"
PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
TITLE, FOLDER, SIMILAR = "<title>", "<folder>", "<similar>"
REQUIRED_TOKENS = (PAD, BOS, EOS, UNK, TITLE, FOLDER)
SPECIAL_TOKENS = (*REQUIRED_TOKENS, SIMILAR)
FIELDS = (("title", TITLE), ("folder", FOLDER))


def clean_field(value: Any) -> str:
    """A metadata value as the model reads it: lowercase words, separators as spaces
    (`Siren_high-01.flac` -> `siren high 01`), slashes kept between folder parts."""
    text = str(value or "").strip()
    text = re.sub(r"\.(wav|flac|ogg|mp3|aiff?)$", "", text, flags=re.I)
    text = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", text)  # camelCase -> camel Case
    text = re.sub(r"[_\-.]+", " ", text)
    text = re.sub(r"\s*/\s*", " / ", text)
    return re.sub(r"\s+", " ", text).strip().lower()


# Words of the names recorders, cameras, phones and editors give files on their own: a title
# made of these and numbers alone says nothing about the sound ("Audio Track 3", "REC_0042",
# "ZOOM0001", "clip_0042", "untitled 2", "Voice Memo 12", "DSC_0031", "Take 5 (copy)").
GENERIC_NAME_WORDS = frozenset(
    """a and audio aux bus ch channel clip clips copy dr dsc edit edited export
    exported file files final h img in input l left m master memo memos mix mixdown mono mov
    ms new no nr number of out output part project r rec record recorded recording recordings
    render rendered right s sample samples seq sequence session sound sounds st stereo take
    takes the tr track tracks trk unnamed untitled v version vid video voice wav zoom""".split()
)


def informative_title(title: Any) -> bool:
    """Whether a title says anything beyond what a recorder names every file: after taking
    away numbers and `GENERIC_NAME_WORDS`, some word is left."""
    words = re.findall(r"[^\W\d_]+", clean_field(title))
    return any(word not in GENERIC_NAME_WORDS for word in words)


def metadata_text(metadata: Mapping[str, Any] | None, *, keep_uninformative: bool = False) -> str:
    """The tagged metadata string; a title falls back to the file name's stem. A title that
    says nothing (`informative_title`) is left out, as if the sound had none, unless
    `keep_uninformative` (training, which shows the model such titles on purpose so that the
    ones this rule misses do not mislead it)."""
    metadata = dict(metadata or {})
    if not metadata.get("title") and metadata.get("file_name"):
        metadata["title"] = Path(str(metadata["file_name"])).stem
    if not keep_uninformative and not informative_title(metadata.get("title")):
        metadata.pop("title", None)
    parts = []
    for key, tag in FIELDS:
        value = clean_field(metadata.get(key))
        if value:
            parts.append(f"{tag} {value}")
    return " ".join(parts)


def neighbour_text(captions: Iterable[str]) -> str:
    """The tagged captions of similar clips, most similar first."""
    return " ".join(f"{SIMILAR} {caption.strip().lower()}" for caption in captions)


def train_tokenizer(texts: Iterable[str], vocab_size: int = 6000) -> Any:
    """A byte-level BPE `tokenizers.Tokenizer` trained on `texts` (lowercased)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE(unk_token=UNK))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer


class CaptionTokenizer:
    """Encodes captions (with <s> ... </s>) and metadata strings; decodes generated ids."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        ids = {tok: tokenizer.token_to_id(tok) for tok in SPECIAL_TOKENS}
        missing = [tok for tok in REQUIRED_TOKENS if ids[tok] is None]
        if missing:
            raise ValueError(f"tokenizer lacks special tokens {missing}")
        self.pad_id, self.bos_id, self.eos_id = ids[PAD], ids[BOS], ids[EOS]
        self.special_ids = {i for i in ids.values() if i is not None}

    @property
    def vocab_size(self) -> int:
        return int(self.tokenizer.get_vocab_size())

    def encode_caption(self, caption: str, max_tokens: int) -> list[int]:
        """<s> caption </s>, cut to `max_tokens` (keeping </s>)."""
        body = self.tokenizer.encode(caption.strip()).ids[: max_tokens - 2]
        return [self.bos_id, *body, self.eos_id]

    def encode_metadata(self, text: str, max_tokens: int) -> list[int]:
        """Tagged metadata (or neighbour) text -> ids (empty for none), cut to `max_tokens`."""
        if not text:
            return []
        return list(self.tokenizer.encode(text).ids[:max_tokens])

    def encode_inputs(
        self, meta_text: str, neighbours: Iterable[str], max_meta: int, max_neighbours: int
    ) -> list[int]:
        """The encoder's text: metadata ids, then the similar clips' captions' ids."""
        return self.encode_metadata(meta_text, max_meta) + self.encode_metadata(
            neighbour_text(neighbours), max_neighbours
        )

    def decode(self, ids: Iterable[int]) -> str:
        kept = [int(i) for i in ids if int(i) not in self.special_ids]
        return re.sub(r"\s+", " ", self.tokenizer.decode(kept)).strip()

    def save(self, folder: Path) -> None:
        self.tokenizer.save(str(Path(folder) / TOKENIZER_FILE))

    @classmethod
    def load(cls, folder: Path) -> CaptionTokenizer:
        from tokenizers import Tokenizer

        return cls(Tokenizer.from_file(str(Path(folder) / TOKENIZER_FILE)))
