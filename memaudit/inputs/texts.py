"""Sample text, only when asked for: zlib sizes (for membership inference) and redacted text of
memorized samples (for the reviewer, with `--show-text`)."""

from __future__ import annotations

import re
import zlib
from typing import Callable

import numpy as np

from memaudit.inputs.tagging import TokenBytes, is_byte_level, token_spans

PATTERNS = {
    "email": r"[\w.+-]+@[\w-]+\.[\w.-]+",
    "url": r"(?:https?://|www\.)\S+",
    "phone": r"(?<!\w)(?:\+?\d[\d ()./-]{6,}\d)(?!\w)",
    "number": r"\d+(?:[.,]\d+)*",
}
"""Personal or identifying data in text, shared by redaction and memaudit.inputs.identifiers."""
REDACTIONS = tuple((f"[{name.upper()}]", re.compile(PATTERNS[name])) for name in ("email", "url", "phone", "number"))
"""Personal data replaced in shown text, in this order; names (spaCy PROPN) become [NAME]."""


def _texts(tokens: np.ndarray, tokenizer) -> list[str]:
    token_bytes = TokenBytes(tokenizer) if is_byte_level(tokenizer) else None
    return [token_spans(tokenizer, row, token_bytes)[0] for row in tokens]


def zlib_lengths(tokens: np.ndarray, tokenizer, lengths: np.ndarray | None = None, first: int = 0) -> np.ndarray:
    """Bytes of each sample's UTF-8 text after zlib compression (Carlini et al.'s zlib entropy): (samples,). Rows
    of whole records (`lengths`): the text of tokens `first` (after the prefix token) to the row's length."""
    rows = tokens if lengths is None else [row[first:n] for row, n in zip(tokens, lengths)]
    return np.array([len(zlib.compress(t.encode("utf-8", errors="replace"))) for t in _texts(rows, tokenizer)],
                    dtype=np.int64)


def redact(text: str, nlp=None) -> str:
    """Replace e-mail addresses, URLs, phone numbers, numbers and (with a spaCy pipeline) names.

    The patterns win where they overlap a name, so an e-mail address becomes [EMAIL], not [NAME]."""
    spans: list[tuple[int, int, str]] = []
    taken = np.zeros(len(text) + 1, dtype=bool)
    for placeholder, pattern in REDACTIONS:
        for m in pattern.finditer(text):
            if not taken[m.start():m.end()].any():
                spans.append((m.start(), m.end(), placeholder))
                taken[m.start():m.end()] = True
    if nlp is not None:
        for token in nlp(text):
            end = token.idx + len(token.text)
            if token.pos_ == "PROPN" and not taken[token.idx:end].any():
                spans.append((token.idx, end, "[NAME]"))
    for start, end, placeholder in sorted(spans, reverse=True):  # right to left keeps offsets valid
        text = text[:start] + placeholder + text[end:]
    return text


def sample_texts(tokens: np.ndarray, tokenizer, redacted: bool = True, spacy_model: str = "auto",
                 lengths: np.ndarray | None = None, first: int = 0) -> Callable[[int], str]:
    """`text_of(i)`: sample i's text, redacted unless told otherwise; decoded only when called. Rows of whole records
    (`lengths`): the text of tokens `first` (after the prefix token) to the row's length."""
    token_bytes = TokenBytes(tokenizer) if is_byte_level(tokenizer) else None
    shown = redactor(redacted, spacy_model)

    def text_of(i: int) -> str:
        row = tokens[i] if lengths is None else tokens[i][first:lengths[i]]
        return shown(token_spans(tokenizer, row, token_bytes)[0])

    return text_of


def redactor(redacted: bool = True, spacy_model: str = "auto") -> Callable[[str], str]:
    """What a text the report shows goes through: `redact` (with spaCy's names when its pipeline is installed;
    else the regex set alone, as the report's text_included note says), or nothing when not `redacted`."""
    return Redactor(spacy_model) if redacted else str


class Redactor:
    """`redact` with the spaCy pipeline loaded at the first call; picklable (the pipeline is loaded again after)."""

    def __init__(self, spacy_model: str = "auto"):
        self.spacy_model, self._nlp, self._loaded = spacy_model, None, False

    def __call__(self, text: str) -> str:
        if not self._loaded:
            from memaudit.errors import ConfigError
            from memaudit.inputs.tagging import load_pipeline

            try:
                self._nlp = load_pipeline(self.spacy_model)[0]
            except ConfigError:
                self._nlp = None
            self._loaded = True
        return redact(text, self._nlp)

    def __getstate__(self) -> dict:
        return {"spacy_model": self.spacy_model, "_nlp": None, "_loaded": False}
