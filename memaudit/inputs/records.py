"""`samples: records`: one sample per record, of its own length (passages, documents, biographies).

Each record's tokens follow a prefix token (the end-of-text token that packed training documents, or the BOS a
tokenizer adds) so that its first token is scored as in training; the rows are padded after their tokens into one
(samples, longest) array, and `Samples.lengths` says where each row's tokens end. A record longer than the window
(`seq_len` scored tokens) is scored in lm-evaluation-harness's rolling windows (memaudit.engine.forward.record_windows)
or cut to the window; both are counted in the report (DatasetInfo.records). Bytes and words are counted on the
record's text as lm-eval counts them (`len(text.encode("utf-8"))`, `len(re.split(r"\\s+", text))`), so its word and
byte perplexities follow from memaudit's per-sample log-likelihoods.
"""

from __future__ import annotations

import json
import re

import numpy as np

from memaudit.errors import ConfigError
from memaudit.inputs.config import DatasetConfig
from memaudit.inputs.samples import Samples, check_vocabulary, field_values, record_steps

PAD = 0  # the id after a row's tokens: never read (every product past a row's length is dropped)


def resolve_prefix(config: DatasetConfig, tokenizer) -> tuple[str, int | None]:
    """(kind, token id) of the token put before each record: `auto` is `bos` when the tokenizer adds one to every
    text (Llama), else `eos` when it has one (GPT-NeoX, GPT-2: documents were packed after it), else `none`."""
    kind = config.prefix
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    if kind == "auto":
        probe = tokenizer("a", add_special_tokens=True, verbose=False)["input_ids"]
        adds_bos = bos is not None and probe[:1] == [bos] and \
            tokenizer("a", add_special_tokens=False, verbose=False)["input_ids"][:1] != [bos]
        kind = "bos" if adds_bos else "eos" if eos is not None else "none"
    token = {"bos": bos, "eos": eos, "none": None}[kind]
    if kind != "none" and token is None:
        raise ConfigError(f"Data set '{config.name}': 'prefix: {kind}' puts the tokenizer's {kind.upper()} token before "
                          f"each record, but this tokenizer has none. Use 'prefix: auto' (or another prefix).")
    return kind, token


def nested_value(record: dict, path: str, where: str):
    """The value of a dotted field: `meta.duplicates` is record["meta"]["duplicates"], reading a JSON string on the
    way (`json.loads(record["meta"])`, as Hubble's data keeps it). None when a key is missing; ConfigError when a
    string on the way is not a JSON object."""
    value = record
    walked = []
    for key in path.split("."):
        if walked and isinstance(value, str):
            try:
                value = json.loads(value)
            except (json.JSONDecodeError, RecursionError) as e:
                raise ConfigError(f"{where}: field '{'.'.join(walked)}' is a string but not JSON ({getattr(e, 'msg', e)}"
                                  f"), so '{path}' cannot be read from it. Fix the record, or group by another field.") \
                    from None
        if not isinstance(value, dict):
            if walked:
                raise ConfigError(f"{where}: field '{'.'.join(walked)}' is not an object (or a JSON string of one), so "
                                  f"'{path}' cannot be read from it.")
            return None
        value = value.get(key)
        walked.append(key)
        if value is None:
            return None
    return value


PADDED_BYTES = 2 << 30  # the padded token rows may take this much beyond 8 bytes x 8 per real token


def _check_padding(config: DatasetConfig, lengths: np.ndarray, records) -> None:
    """Refuse records so unequal that padding every row to the longest would take far more memory than the tokens
    (one book among short passages): the rows and every per-token product are (samples, longest)."""
    cells = len(lengths) * int(lengths.max())
    if cells * 8 > max(PADDED_BYTES, 64 * int(lengths.sum())):
        longest = int(np.argmax(lengths))
        raise ConfigError(f"Data set '{config.name}': record {records[longest][0]} of '{config.path}' has "
                          f"{int(lengths[longest]):,} tokens while the median record has {int(np.median(lengths)):,}: "
                          f"padding all {len(lengths):,} records to its length would take {cells * 8 / 2**30:.1f} GiB "
                          "for the tokens alone (and as much per product). Use 'longer: cut' (each record cut to the "
                          "window), put the longest records in a data set of their own, or split them into records.")


def count_words(text: str) -> int:
    """Words as lm-evaluation-harness counts them for word perplexity (`len(re.split(r"\\s+", doc))`)."""
    return len(re.split(r"\s+", text))


def whole_records(config: DatasetConfig, records: list[tuple[int, dict]], tokenizer):
    """Samples of whole records (validated `(line, record)` pairs of `text` or `tokens`): each the prefix and its
    tokens, padded after them; ids from `id` (else the record's index), steps from `seen_at_step`, the group_by
    field (dotted names read nested keys). A record with nothing to score is an error naming it."""

    where = lambda line: f"Data set '{config.name}': record {line} of '{config.path}'"
    kind, token = resolve_prefix(config, tokenizer)
    prefix = [token] if token is not None else []
    window, vocab = config.seq_len, len(tokenizer)
    if config.max_samples:
        records = records[:config.max_samples]
    rows, texts, cut, ids, steps = [], [], [], [], []
    for i, (line, r) in enumerate(records):
        if "text" in r:
            text = r["text"]
            if not text.strip():
                raise ConfigError(f"{where(line)}: 'text' is empty{' (only whitespace)' if text else ''}: a record "
                                  "with no text has nothing to score. Remove it from the file.")
            toks = tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
        else:
            toks, text = r["tokens"], None
            check_vocabulary(where(line), max(toks, default=0), vocab)
        if not len(toks):
            what = "its text tokenizes to no tokens" if text else "'tokens' is empty"
            raise ConfigError(f"{where(line)}: {what}: nothing to score. Remove the record.")
        row = prefix + list(toks)
        if len(row) < 2:
            raise ConfigError(f"{where(line)} has one token and no prefix token "
                              "('prefix: none'): nothing to score (a record's first token is scored after the prefix). "
                              "Use 'prefix: auto', or remove the record.")
        over = len(row) - 1 - window if config.longer == "cut" else 0
        if over > 0:
            row = row[:window + 1]
            text = tokenizer.decode(row[len(prefix):])  # bytes and words of what is scored
        rows.append(row)
        texts.append(text if text is not None else tokenizer.decode(toks))
        cut.append(max(0, over))
        ids.append(str(r.get("id", i)))
        steps.append(r.get("seen_at_step"))
    known = record_steps(config, ids, steps)
    lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))  # (samples,)
    _check_padding(config, lengths, records)
    tokens = np.full((len(rows), int(lengths.max())), PAD, dtype=np.int64)  # (samples, longest)
    tokens[np.arange(tokens.shape[1]) < lengths[:, None]] = np.fromiter(
        (t for row in rows for t in row), dtype=np.int64, count=int(lengths.sum()))
    samples = Samples(config, tokens, ids, known, lengths=lengths,
                      n_bytes=np.asarray([len(t.encode("utf-8")) for t in texts], dtype=np.int64),
                      n_words=np.asarray([count_words(t) for t in texts], dtype=np.int64),
                      cut=np.asarray(cut, dtype=np.int64), prefix=(kind, token))
    if config.group_by is not None:
        values = [nested_value(r, config.group_by, where(line)) for line, r in records]
        samples.fields[config.group_by] = field_values(config, values, lambda i: where(records[i][0]))
    return samples
