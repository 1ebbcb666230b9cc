"""Which target tokens are identifier-like: names, numbers, e-mail addresses, URLs, codes.

A token counts as an identifier when a character of its word matches one of ID_PATTERNS, or,
when spaCy tags are available, when its word is tagged PROPN or NUM.
"""

from __future__ import annotations

import re

import numpy as np

from memaudit.inputs.tagging import TAGS, TokenBytes, is_byte_level, token_spans
from memaudit.inputs.texts import PATTERNS

ID_PATTERNS = {
    **{name: PATTERNS[name] for name in ("email", "url", "number")},
    "code": r"\b(?=[\w-]*\d)(?=[\w-]*[A-Za-z])[\w-]{8,}\b|\b[0-9a-fA-F]{8,}\b",
}
"""The documented regex set: e-mail addresses, URLs, numbers, long alphanumeric or hex codes."""
ID_REGEX = re.compile("|".join(f"(?:{p})" for p in ID_PATTERNS.values()))
ID_TAGS = (TAGS.index("PROPN"), TAGS.index("NUM"))


def describe_source(with_spacy: bool) -> str:
    """What decided which tokens are identifiers (recorded in the report)."""
    return ("spaCy PROPN/NUM + " if with_spacy else "") + "regex (" + ", ".join(ID_PATTERNS) + ")"


def identifier_mask(tokens: np.ndarray, tokenizer, pos_tags: np.ndarray | None = None,
                    lengths: np.ndarray | None = None) -> np.ndarray:
    """True for identifier-like target tokens: (samples, seq_len - 1) bool. Rows of whole records (`lengths`):
    each row's own tokens; the padding after them is False."""
    token_bytes = TokenBytes(tokenizer) if is_byte_level(tokenizer) else None
    out = np.zeros((tokens.shape[0], tokens.shape[1] - 1), dtype=bool)
    for i, row in enumerate(tokens):
        text, spans = token_spans(tokenizer, row if lengths is None else row[:lengths[i]], token_bytes)
        hit = np.zeros(len(text) + 1, dtype=bool)
        for m in ID_REGEX.finditer(text):
            hit[m.start():m.end()] = True
        out[i, :len(spans) - 1] = [bool(hit[start:end].any()) for start, end in spans[1:]]
    if pos_tags is not None:
        out |= np.isin(pos_tags, ID_TAGS)
    return out
