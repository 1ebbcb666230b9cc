"""Tagging speed: memaudit's POS tagging of WikiText-2 valid (214k words) on this machine.

    python benchmarks/tagging_speed.py [path/to/valid.txt]

Prints seconds and words/s for memaudit's path (samples -> text + spans -> spaCy -> aligned tags)
with 1 and 2 spaCy processes, and the ratio to spaCy alone on the same sample texts.
"""

import sys
import time
from pathlib import Path

import numpy as np

from memaudit.inputs.tagging import TokenBytes, load_pipeline, tag_samples, token_spans
from memaudit.lab.tokenizer import train_bpe

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "wikitext-2" / "valid.txt"


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT
    text = path.read_text(encoding="utf-8")
    words = len(text.split())
    tokenizer = train_bpe([text], 8192)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    seq_len = 128
    tokens = np.asarray(ids[: len(ids) // seq_len * seq_len]).reshape(-1, seq_len)
    nlp, label = load_pipeline("auto")
    print(f"{path.name}: {words:,} words, {tokens.shape[0]} samples x {seq_len} tokens; pipeline {label}, "
          f"components {nlp.pipe_names}")

    t = time.perf_counter()
    token_bytes = TokenBytes(tokenizer)
    texts = [token_spans(tokenizer, row, token_bytes)[0] for row in tokens]
    decode_s = time.perf_counter() - t
    t = time.perf_counter()
    for _ in nlp.pipe(texts, batch_size=256):
        pass
    spacy_s = time.perf_counter() - t
    print(f"decode to text + spans: {decode_s:.2f} s; spaCy alone on the sample texts: {spacy_s:.2f} s")
    for n_process in (1, 2):
        t = time.perf_counter()
        tag_samples(tokens, tokenizer, nlp, n_process=n_process)
        s = time.perf_counter() - t
        print(f"memaudit tagging, n_process={n_process}: {s:.2f} s, {words / s:,.0f} words/s, "
              f"{s / spacy_s:.2f}x spaCy alone (1 process)")


if __name__ == "__main__":
    main()
