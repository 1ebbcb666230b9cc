"""Data sets -> fixed-length token samples with stable ids."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from memaudit.errors import ConfigError
from memaudit.inputs.arrow import ARROW_SUFFIXES, PARQUET_SUFFIXES
from memaudit.inputs.config import MAX_STEP, DatasetConfig
from memaudit.inputs.hub_data import is_hub_path
from memaudit.inputs.samples import (
    HASH_ROWS,
    NumberedIds,
    Samples,
    check_vocabulary,
    field_values,
    file_stamp,
    record_steps,
)
from memaudit.inputs.sources import fetch_hub_file
from memaudit.memory import release_pages


def load_samples(config: DatasetConfig, tokenizer, records=None) -> Samples:
    """Read `config.path` (text, JSONL `text`, or JSONL `tokens`) and cut it into samples.

    Plain text and JSONL `text` records are tokenized (records joined by the EOS token), then cut
    into consecutive `seq_len` chunks; the remainder is dropped. JSONL `tokens` records are
    pre-tokenized samples (as the lab writes them) and are used as they are. `records` (the Python
    API) stands for the file: a list of texts, of token-id lists or of JSONL-style dicts, or a 2-D
    integer array; validated exactly as a file's records are.
    """
    if records is not None:  # an array is read as a .npy, a list as JSONL records
        _check_fields_apply(config, ".npy" if isinstance(records, np.ndarray) else ".jsonl", "records given in memory")
        return _from_memory(config, records, tokenizer)
    if is_hub_path(config.path):  # a file of a Hub data set repository: read from the HF cache
        config = config.model_copy(update={"path": fetch_hub_file(config.path, config.name)})
    path = Path(config.path)
    _check_fields_apply(config, path.suffix, f"'{path.name}'")
    if path.is_dir():
        arrow = sorted(path.glob("*.arrow"))
        hint = (f" It looks like a folder `datasets`' save_to_disk wrote: point 'path' at its Arrow file "
                f"('{arrow[0]}'{', one data set per file' if len(arrow) > 1 else ''}).") if arrow else ""
        raise ConfigError(f"Data set '{config.name}': '{path}' is a folder, not a data file."
                          f"{hint or ' Point path at a file.'}")
    if not path.is_file():
        raise ConfigError(f"Data set '{config.name}': no file at '{path}'. Fix 'path' in the yaml "
                          "(relative paths are relative to the yaml's folder).")
    token_format = format_of(path.suffix)
    jsonl = path.suffix in (".jsonl", ".json") or "".join(path.suffixes[-2:]) in (".jsonl.gz", ".json.gz")
    if config.samples == "records" and path.suffix in PARQUET_SUFFIXES + ARROW_SUFFIXES:
        return _records_from_table(config, path, tokenizer)
    if config.samples == "records" and not jsonl:
        raise ConfigError(f"Data set '{config.name}': 'samples: records' reads one sample per record: JSONL (`text` "
                          f"or `tokens`, `.jsonl` or `.jsonl.gz`) or Parquet/Arrow rows, but '{path.name}' is neither. "
                          "Convert the data to records, or remove 'samples: records' to cut it into chunks of seq_len "
                          "tokens.")
    if config.role == "canary" or (token_format is not None and not token_format.group_by):
        _check_group_by(config, "array")
    if token_format is not None and config.role != "canary":
        return token_format.read(config, path, len(tokenizer))
    text = _read_text(config, path)
    if config.role == "canary":
        from memaudit.inputs.canaries import candidate_samples, read_canaries

        tokens, mask, ids, meta = candidate_samples(read_canaries(path), tokenizer, config.max_candidates)
        return Samples(config, tokens, ids, target_mask=mask, canaries=meta)
    if not text.strip():
        raise ConfigError(f"Data set '{config.name}': '{path}' is empty. Point 'path' at a file with text.")
    if jsonl:
        return _from_records(config, _read_jsonl(config, text), tokenizer)
    _check_group_by(config, "text")
    return _from_texts(config, [text], tokenizer)


def _records_from_table(config: DatasetConfig, path: Path, tokenizer) -> Samples:
    """`samples: records` from Parquet or Arrow rows: a token column of lists of any length, or a `text` column;
    `id`, `seen_at_step` and the group_by field's column when the file has them. Checked as JSONL records are."""
    from memaudit.inputs.arrow import read_records
    from memaudit.inputs.records import whole_records

    where = f"Data set '{config.name}': '{path}'"
    fields = ("id", "seen_at_step", *((config.group_by.partition(".")[0],) if config.group_by else ()))
    rows = read_records(path, where, fields, config.first_sample, config.max_samples)
    return whole_records(config, _checked_records(config, rows, lambda n: f"{where}: row {n}"), tokenizer)


def _read_text(config: DatasetConfig, path: Path) -> str:
    """The file's text: UTF-8 (a byte-order mark dropped), gunzipped when it ends in `.gz`."""
    try:
        if path.suffix == ".gz":
            import gzip
            import zlib

            try:
                raw = gzip.decompress(path.read_bytes())
            except (OSError, EOFError, zlib.error) as e:
                raise ConfigError(f"Data set '{config.name}': '{path}' is not a readable gzip file ({e}). Check the "
                                  "download, or point 'path' at the uncompressed file.") from None
            return raw.decode("utf-8-sig")
        return path.read_text(encoding="utf-8-sig")  # a byte-order mark (Windows editors write one) is not text
    except UnicodeDecodeError as e:
        raise ConfigError(f"Data set '{config.name}': '{path}' is not UTF-8 text ({e.reason} at byte "
                          f"{e.start}). Convert it, e.g. `iconv -f latin1 -t utf-8`.") from None


def _check_fields_apply(config: DatasetConfig, suffix: str, what: str) -> None:
    """Refuse the settings of array and training-order data on data they do not apply to (they would be
    ignored): `first_sample`, `sequences_per_step`, `first_seen_step`, as each token format declares them."""
    for setting in ("first_sample", "sequences_per_step", "first_seen_step"):
        applies = tuple(s for f in TOKEN_FORMATS for s in f.suffixes if setting in f.fields)
        if getattr(config, setting) != DatasetConfig.model_fields[setting].default and suffix not in applies:
            raise ConfigError(f"Data set '{config.name}': '{setting}' applies to {' and '.join(applies)} data, not to "
                              f"{what}. Remove it.")
    if suffix in (".bin", ".idx") and config.first_seen_step is not None and not config.sequences_per_step:
        raise ConfigError(f"Data set '{config.name}': 'first_seen_step' numbers the steps of a training order, which "
                          "for Megatron data needs 'sequences_per_step' (Pythia: 1024). Add it, or remove "
                          "'first_seen_step'.")


def _from_memory(config: DatasetConfig, items, tokenizer) -> Samples:
    """Samples from records given in Python: texts, token-id lists, JSONL-style dicts or a 2-D array."""
    where = f"Data set '{config.name}' (given in memory)"
    if config.role == "canary":
        raise ConfigError(f"{where}: a canary data set is read from a canary file (its secrets and their formats, "
                          "see memaudit/inputs/canaries.py); give it as {'path': 'canaries.jsonl', 'role': 'canary'}.")
    if isinstance(items, np.ndarray):
        if config.samples == "records":
            raise ConfigError(f"{where}: 'samples: records' reads one sample per record; give a list of texts, of "
                              "token-id lists or of dicts with 'text' or 'tokens', not an array.")
        _check_group_by(config, "array")
        return _from_array(config, items, f"{where}: the array", len(tokenizer))
    if isinstance(items, (str, bytes, dict)) or not isinstance(items, (list, tuple)):
        raise ConfigError(f"{where} must be a list of texts, of token-id lists or of dicts with 'text' or "
                          f"'tokens', or a 2-D array of token ids; got {type(items).__name__}.")
    if not items:
        raise ConfigError(f"{where} is empty. Give at least one record.")
    records = [(i, {"text": x} if isinstance(x, str) else {"tokens": np.asarray(x).tolist() if isinstance(
        x, np.ndarray) else list(x)} if isinstance(x, (list, tuple, np.ndarray)) else x) for i, x in enumerate(items)]
    return _from_records(config, _checked_records(config, records, lambda i: f"{where}: record {i}"), tokenizer)


def _from_records(config: DatasetConfig, records: list[tuple[int, dict]], tokenizer) -> Samples:
    if config.samples == "records":
        from memaudit.inputs.records import whole_records

        return whole_records(config, records, tokenizer)
    if "tokens" in records[0][1]:
        return _pretokenized(config, records, len(tokenizer))
    _check_group_by(config, "text")
    return _from_texts(config, [r["text"] for _, r in records], tokenizer)


def _from_texts(config: DatasetConfig, text_parts: list[str], tokenizer) -> Samples:
    """Texts tokenized and joined by the EOS token, cut into consecutive seq_len chunks."""
    path, seq_len = config.path, config.seq_len
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    stream: list[int] = []
    n_text_tokens = 0
    for i, part in enumerate(text_parts):
        ids = tokenizer(part, add_special_tokens=False, verbose=False)["input_ids"]
        stream += ids
        n_text_tokens += len(ids)
        if i < len(text_parts) - 1:
            stream += eos
    if not n_text_tokens:
        raise ConfigError(f"Data set '{config.name}': the text of '{path}' tokenizes to nothing. "
                          "Check that the file holds real text and that 'text' is the JSONL field.")
    n = len(stream) // seq_len
    if n == 0:
        raise ConfigError(f"Data set '{config.name}': '{path}' gives {len(stream)} tokens, too few for one "
                          f"sample of seq_len={seq_len}. Lower 'seq_len' or give more text.")
    if config.max_samples:
        n = min(n, config.max_samples)
    tokens = np.asarray(stream[: n * seq_len], dtype=np.int64).reshape(n, seq_len)
    return Samples(config, tokens, NumberedIds(f"{config.name}:", 0, n))


def _read_jsonl(config: DatasetConfig, text: str) -> list[tuple[int, dict]]:
    """(line number, record) of every non-blank line. Every record holds the same kind of sample as the
    first: a `text` string, or `tokens`, a list of integer token ids; nothing is coerced."""
    parsed: list[tuple[int, dict]] = []
    for lineno, line in enumerate(text.split("\n"), 1):  # JSON strings may hold U+2028 and other line breaks
        line = line.removesuffix("\r")
        if not line.strip():
            continue
        try:
            parsed.append((lineno, json.loads(line)))
        except (json.JSONDecodeError, RecursionError) as e:
            raise ConfigError(f"Data set '{config.name}': line {lineno} of '{config.path}' is not JSON "
                              f"({getattr(e, 'msg', e)}). Each line must be an object with a 'text' or 'tokens' "
                              "field.") from None
    return _checked_records(config, parsed, lambda n: f"Data set '{config.name}': line {n} of '{config.path}'")


def _checked_records(config: DatasetConfig, parsed: list[tuple[int, object]], describe) -> list[tuple[int, dict]]:
    """The records, each checked: an object with a `text` string or a `tokens` list of token ids (the same
    kind as the first), an optional string/integer `id` and `seen_at_step`; `describe(n)` names record n."""
    records: list[tuple[int, dict]] = []
    kind = None
    for lineno, record in parsed:
        where = describe(lineno)
        if not isinstance(record, dict) or len({"text", "tokens"} & record.keys()) != 1:
            raise ConfigError(f"{where} must be an object with either a 'text' or a 'tokens' field (exactly one "
                              "of them).")
        this = "text" if "text" in record else "tokens"
        kind = kind or this
        if this != kind:
            raise ConfigError(f"{where} has '{this}' but the first record has '{kind}'. A file holds either text "
                              "or pre-tokenized samples; split it into two data sets.")
        if kind == "text" and not isinstance(record["text"], str):
            raise ConfigError(f"{where}: 'text' must be a string, not {_json_type(record['text'])}.")
        if kind == "tokens":
            _check_token_list(record["tokens"], where)
        if "id" in record and (not isinstance(record["id"], (str, int)) or isinstance(record["id"], bool)):
            raise ConfigError(f"{where}: 'id' must be a string or an integer, not {_json_type(record['id'])}.")
        if kind == "text" and {"id", "seen_at_step"} & record.keys() and config.samples == "chunks":
            raise ConfigError(f"{where}: 'id' and 'seen_at_step' belong to records with 'tokens' (one sample each); "
                              "text records are joined and cut into samples of seq_len tokens, so a record's id or "
                              "step names no sample. Pre-tokenize the records (one 'tokens' list each), or remove "
                              "the fields.")
        step = record.get("seen_at_step")
        if step is not None and (type(step) is not int or not 0 <= step <= MAX_STEP):
            raise ConfigError(f"{where}: 'seen_at_step' must be an integer from 0 to 2**53, not {step!r}.")
        records.append((lineno, record))
    return records


def _json_type(value) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number",
            float: "a number", type(None): "null"}.get(type(value), type(value).__name__) + f" ({json.dumps(value)[:40]})"


def _check_token_list(tokens, where: str) -> None:
    """Token ids must be a list of non-negative integers (no floats, booleans or strings)."""
    if not isinstance(tokens, list):
        raise ConfigError(f"{where}: 'tokens' must be a list of integer token ids, not {_json_type(tokens)}.")
    for i, t in enumerate(tokens):
        if type(t) is not int:
            raise ConfigError(f"{where}: token {i} is {_json_type(t)}; token ids must be integers.")
        if not 0 <= t < 2**63:
            raise ConfigError(f"{where}: token {i} is {t}, which is no token id (ids run from 0 to the vocabulary "
                              "size - 1). Re-create the data with the series' tokenizer.")


def _from_npy(config: DatasetConfig, path: Path, vocab_size: int) -> Samples:
    """Token ids from a `.npy` array: (samples, length), or (steps, batch, length) as Pythia's batch
    viewer writes it, whose row j was seen at step `first_seen_step + j`."""
    stamp = file_stamp(path)
    try:
        array = np.load(path, allow_pickle=False, mmap_mode="r")
    except (ValueError, OSError) as e:
        raise ConfigError(f"Data set '{config.name}': '{path}' is not a readable .npy array of token ids ({e}).") from None
    samples = _from_array(config, array, f"Data set '{config.name}': '{path}'", vocab_size)
    samples.mapped = ((path, stamp),)
    samples.check_unchanged()  # changed while it was checked and hashed
    return samples


def _from_array(config: DatasetConfig, array: np.ndarray, where: str, vocab_size: int) -> Samples:
    steps = None
    shape_error = ConfigError(f"{where} holds a {array.dtype} array of shape {array.shape}; "
                              f"expected integer token ids of shape (samples, >= seq_len={config.seq_len}) or "
                              "(steps, batch, length).")
    if array.ndim not in (2, 3) or 0 in array.shape or not np.issubdtype(array.dtype, np.integer):
        raise shape_error
    if array.ndim == 3:
        if config.first_seen_step is not None:
            steps = np.repeat(np.arange(array.shape[0]) + config.first_seen_step, array.shape[1])
        array = array.reshape(-1, array.shape[2])
    elif config.first_seen_step is not None:
        raise ConfigError(f"{where}: 'first_seen_step' applies to a (steps, batch, length) array, "
                          f"but this one has shape {array.shape}. Remove it, or give the training order as "
                          "(steps, batch, length).")
    if array.shape[1] < config.seq_len:
        raise shape_error
    first = config.first_sample
    if first >= len(array):
        raise ConfigError(f"{where} has {len(array)} samples; 'first_sample: {first}' skips them all.")
    n = min(len(array) - first, config.max_samples or len(array))
    rows = array[first:first + n, :config.seq_len]  # a view: a memory map stays one
    return _from_rows(config, rows, steps[first:first + n] if steps is not None else None, where, vocab_size, first)


def samples_from_rows(config: DatasetConfig, rows: np.ndarray, where: str, vocab_size: int) -> Samples:
    """What a new token format's reader returns: its rows (samples, seq_len), already cut to `seq_len` and taken
    from `first_sample` on (at most `max_samples`), as checked samples; `where` names the file in errors."""
    return _from_rows(config, rows, None, where, vocab_size, config.first_sample)


def _from_rows(config: DatasetConfig, rows: np.ndarray, steps: np.ndarray | None, where: str, vocab_size: int,
               first: int = 0) -> Samples:
    """Samples from an integer array of rows (samples, seq_len), kept as it is (no copy, no list per sample):
    ids `<name>:<index>` counted from `first`; every token id checked against the vocabulary."""
    if not np.issubdtype(rows.dtype, np.integer):
        raise ConfigError(f"{where} holds {rows.dtype} values, not integer token ids.")
    low, high = _extremes(rows)
    if low < 0 or high >= 2**63:
        raise ConfigError(f"{where} holds token id {low if low < 0 else high}, which is no "
                          "token id (ids run from 0 to the vocabulary size - 1).")
    check_vocabulary(where, high, vocab_size)
    return Samples(config, rows, NumberedIds(f"{config.name}:", first, len(rows)),
                   np.asarray(steps, dtype=np.int64) if steps is not None else None)


def _extremes(rows: np.ndarray) -> tuple[int, int]:
    """Smallest and largest token id, read in chunks of rows."""
    low, high = None, None
    for start in range(0, len(rows), HASH_ROWS):
        chunk = np.asarray(rows[start:start + HASH_ROWS])
        low = int(chunk.min()) if low is None else min(low, int(chunk.min()))
        high = int(chunk.max()) if high is None else max(high, int(chunk.max()))
        release_pages(rows)
    return low, high


def _from_megatron(config: DatasetConfig, path: Path, vocab_size: int) -> Samples:
    """Token ids from a Megatron indexed data set (.bin + .idx), memory-mapped: sequences `first_sample` on,
    cut to seq_len; with `sequences_per_step`, sequence i was seen at step first_seen_step + i // it (Pythia:
    1024 sequences per step, from step 0)."""
    from memaudit.inputs.megatron import open_indexed, prefix_of

    stamps = tuple((part, file_stamp(part)) for part in (prefix_of(path).with_suffix(".idx"),
                                                         prefix_of(path).with_suffix(".bin")))
    data = open_indexed(path, config.name)
    where = f"Data set '{config.name}': '{prefix_of(path)}.bin'"
    first = config.first_sample
    if not len(data):
        raise ConfigError(f"{where} holds 0 sequences. Point 'path' at a data set with token ids.")
    if first >= len(data):
        raise ConfigError(f"{where} holds {len(data)} sequences; 'first_sample: {first}' skips them all.")
    n = min(len(data) - first, config.max_samples or len(data))
    short = np.flatnonzero(data.sizes[first:first + n] < config.seq_len)
    if short.size:
        raise ConfigError(f"{where}: sequence {first + int(short[0])} has {int(data.sizes[first + short[0]])} tokens, "
                          f"fewer than seq_len={config.seq_len}. Lower 'seq_len' to at most the shortest sequence.")
    steps = None
    if config.sequences_per_step:
        steps = (first + np.arange(n)) // config.sequences_per_step + (config.first_seen_step or 0)
    samples = _from_rows(config, data.rows(first, n, config.seq_len), steps, where, vocab_size, first)
    samples.mapped = stamps
    samples.check_unchanged()
    return samples


def _from_table(config: DatasetConfig, path: Path, vocab_size: int) -> Samples:
    """Parquet or Arrow rows: a column of token-id lists (`input_ids` or `tokens`), and the group_by column."""
    from memaudit.inputs.arrow import read_column, read_token_column

    where = f"Data set '{config.name}': '{path}'"
    rows = read_token_column(path, where, config.seq_len, config.first_sample, config.max_samples)
    samples = samples_from_rows(config, rows, where, vocab_size)
    if config.group_by is not None:
        from memaudit.inputs.records import nested_value

        top, _, rest = config.group_by.partition(".")
        values = read_column(path, where, top, config.first_sample, len(rows))
        row = lambda i: f"{where}: row {config.first_sample + i}"
        if rest:  # a key inside a struct column or a JSON string
            values = [nested_value({top: v}, config.group_by, row(i)) for i, v in enumerate(values)]
        samples.fields[config.group_by] = field_values(config, values, row)
    return samples


@dataclass(frozen=True)
class TokenFormat:
    """A file format of token ids, read without tokenizing: adding one is a reader and one entry in TOKEN_FORMATS."""

    suffixes: tuple[str, ...]
    read: Callable[[DatasetConfig, Path, int], Samples]  # (config, path, vocabulary size) -> Samples
    fields: frozenset = frozenset({"first_sample"})  # the DatasetConfig fields that apply to it
    group_by: bool = False  # whether its records carry per-sample fields to group by


TOKEN_FORMATS: list[TokenFormat] = [
    TokenFormat((".npy",), _from_npy, frozenset({"first_sample", "first_seen_step"})),
    TokenFormat((".bin", ".idx"), _from_megatron, frozenset({"first_sample", "sequences_per_step", "first_seen_step"})),
    TokenFormat(PARQUET_SUFFIXES + ARROW_SUFFIXES, _from_table, group_by=True),
]
"""The token formats, by suffix (text, JSONL and canary files are read as text)."""


def format_of(suffix: str) -> TokenFormat | None:
    """The token format of files with this suffix, or None (text)."""
    return next((f for f in TOKEN_FORMATS if suffix in f.suffixes), None)


FIELD_TYPES = {"i": "integers", "u": "integers", "f": "floats", "b": "booleans", "O": "text"}


def check_field_types(seen: dict, samples: dict, series: str) -> None:
    """Refuse a group_by field whose values are of another type (integers, floats, booleans, text) than in another
    data set or series of the run (`seen`: field -> (type, where), filled as data sets load): its per-sample
    column (`data_<field>` in --samples-out) must have one type across the folder, or no tool can read it."""
    for name, s in samples.items():
        for field_name, values in s.fields.items():
            kind, here = FIELD_TYPES[values.dtype.kind], f"data set '{name}' of series '{series}'"
            first, where = seen.setdefault(field_name, (kind, here))
            if first != kind:
                raise ConfigError(f"Field '{field_name}' (group_by) holds {kind} in {here} but {first} in {where}: "
                                  "its per-sample column must have one type in every data set and series of a run. "
                                  "Give the field one type everywhere (e.g. 1.0 rather than 1 where floats are "
                                  "meant, or quote every value as text).")


def _check_group_by(config: DatasetConfig, kind: str) -> None:
    if config.group_by is not None and kind not in ("tokens", "table"):
        raise ConfigError(f"Data set '{config.name}': group_by reads a per-sample field, which needs one sample per "
                          "record: JSONL records with 'tokens', Parquet/Arrow rows, or any JSONL records with 'samples: "
                          "records'. Add 'samples: records', pre-tokenize the records, or remove group_by.")


def _pretokenized(config: DatasetConfig, records: list[tuple[int, dict]], vocab_size: int) -> Samples:
    """Samples from validated (line, record) pairs of token lists, cut to seq_len."""
    rows, ids, steps = [], [], []
    for lineno, r in records:
        toks = r["tokens"]
        if len(toks) < config.seq_len:
            raise ConfigError(f"Data set '{config.name}': record {lineno} of '{config.path}' has {len(toks)} "
                              f"tokens, fewer than seq_len={config.seq_len}. Lower 'seq_len' to at most "
                              "the shortest record.")
        check_vocabulary(f"Data set '{config.name}': record {lineno} of '{config.path}'", max(toks[: config.seq_len]),
                         vocab_size)
        rows.append(toks[: config.seq_len])
        ids.append(str(r.get("id", len(ids))))
        steps.append(r.get("seen_at_step"))
        if config.max_samples and len(rows) == config.max_samples:
            break
    known = record_steps(config, ids, steps)
    tokens = np.asarray(rows, dtype=np.int64)
    samples = Samples(config, tokens, ids, known)
    if config.group_by is not None:
        used = records[:len(rows)]
        from memaudit.inputs.records import nested_value

        where = lambda i: f"Data set '{config.name}': record {used[i][0]} of '{config.path}'"
        values = [nested_value(r, config.group_by, where(i)) for i, (_, r) in enumerate(used)]
        samples.fields[config.group_by] = field_values(config, values, where)
    return samples
