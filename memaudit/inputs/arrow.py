"""Token ids from Parquet or Arrow files, as `datasets` writes them (`to_parquet`, `save_to_disk`'s .arrow):
a column of token-id lists, `input_ids` or `tokens`. The rows are copied once, a record batch at a time,
into a memory-mapped array in an unlinked temporary file, so a file of any size is read lazily after that
(and its pages can be released, see memaudit.memory.release_pages). Needs pyarrow."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from memaudit.errors import ConfigError

COLUMNS = ("input_ids", "tokens")  # the first one present is read
PARQUET_SUFFIXES = (".parquet", ".pq")
ARROW_SUFFIXES = (".arrow", ".feather", ".ipc")  # Feather version 2 is the Arrow IPC file format
BATCH_ROWS = 1 << 16


def _batches(path: Path, where: str):
    """(schema, number of rows, iterator of record batches) of a Parquet, Arrow IPC file or Arrow stream."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ConfigError(f"{where}: reading Parquet or Arrow data needs pyarrow: `pip install pyarrow` (or "
                          "memaudit-lm[parquet]).") from None
    try:
        if path.suffix in PARQUET_SUFFIXES:
            f = pq.ParquetFile(path)
            return f.schema_arrow, f.metadata.num_rows, lambda column: f.iter_batches(BATCH_ROWS, columns=[column])
        source = pa.memory_map(str(path))
        try:
            reader = pa.ipc.open_file(source)
            batches = [reader.get_batch(i) for i in range(reader.num_record_batches)]
        except pa.ArrowInvalid:
            source.seek(0)
            reader = pa.ipc.open_stream(source)  # datasets' save_to_disk writes the stream format
            batches = list(reader)
        schema = reader.schema
        return schema, sum(b.num_rows for b in batches), lambda column: (b.select([column]) for b in batches)
    except (pa.ArrowInvalid, OSError) as e:
        raise ConfigError(f"{where} is not a readable {path.suffix[1:]} file ({e}).") from None


def _rows_to_read(where: str, n_rows: int, first: int, max_samples: int | None, holding: str) -> int:
    """How many rows to read from `first` on (at most `max_samples`); a file with none to read is an error."""
    if not n_rows:
        raise ConfigError(f"{where} has 0 rows. Point 'path' at a file with {holding}.")
    if first >= n_rows:
        raise ConfigError(f"{where} has {n_rows} rows; 'first_sample: {first}' skips them all.")
    return min(n_rows - first, max_samples or n_rows)


def read_token_column(path: Path, where: str, seq_len: int, first: int = 0, max_samples: int | None = None) -> np.ndarray:
    """Rows `first` on (at most `max_samples`) of the token column, cut to seq_len: (samples, seq_len) int64,
    memory-mapped. Every list must be non-null and hold at least seq_len integer ids."""
    schema, n_rows, batches = _batches(Path(path), where)
    import pyarrow as pa

    column = next((c for c in COLUMNS if c in schema.names), None)
    if column is None:
        raise ConfigError(f"{where} has no token column: it needs one of {', '.join(COLUMNS)} (lists of token ids); "
                          f"its columns are {', '.join(schema.names) or 'none'}.")
    kind = schema.field(column).type
    fixed = pa.types.is_fixed_size_list(kind)  # datasets' Sequence(..., length=n)
    listed = pa.types.is_list(kind) or pa.types.is_large_list(kind) or fixed
    if not listed or not pa.types.is_integer(kind.value_type):
        raise ConfigError(f"{where}: column '{column}' holds {kind}, not lists of integer token ids.")
    if fixed and kind.list_size < seq_len:
        raise ConfigError(f"{where}: column '{column}' holds lists of {kind.list_size} tokens, fewer than "
                          f"seq_len={seq_len}. Lower 'seq_len' to at most {kind.list_size}.")
    n = _rows_to_read(where, n_rows, first, max_samples, "token ids")
    rows = np.memmap(tempfile.TemporaryFile(prefix="memaudit-tokens-"), dtype=np.int64, mode="w+", shape=(n, seq_len))
    seen, filled = 0, 0
    for batch in batches(column):
        lists = batch.column(0)
        take = slice(max(0, first - seen), max(0, min(len(lists), first + n - seen)))
        seen += len(lists)
        lists = lists[take.start:take.stop]
        if not len(lists):
            continue
        if lists.null_count:
            raise ConfigError(f"{where}: row {first + filled + int(np.flatnonzero(lists.is_null())[0])} of column "
                              f"'{column}' is null.")
        if fixed:
            starts = np.arange(len(lists)) * kind.list_size  # (rows,) of each row in the flattened values
        else:
            offsets = np.asarray(lists.offsets)  # (rows + 1,), relative to the list values
            lengths = np.diff(offsets)
            if (lengths < seq_len).any():
                i = int(np.flatnonzero(lengths < seq_len)[0])
                raise ConfigError(f"{where}: row {first + filled + i} has {int(lengths[i])} tokens, fewer than "
                                  f"seq_len={seq_len}. Lower 'seq_len' to at most the shortest row.")
            starts = offsets[:-1] - offsets[0]
        flat = lists.flatten()  # these rows' tokens, one after another
        if flat.null_count:
            raise ConfigError(f"{where}: column '{column}' holds a null token id near row {first + filled}.")
        values = np.asarray(flat)
        if values.dtype == np.uint64 and values.size and int(values.max()) >= 2**63:  # would wrap to a negative id
            raise ConfigError(f"{where} holds token id {int(values.max())}, which is no token id (ids run from 0 to "
                              "the vocabulary size - 1).")
        rows[filled:filled + len(lists)] = values[starts[:, None] + np.arange(seq_len)]
        filled += len(lists)
        if filled == n:
            break
    rows.flush()
    return rows


def read_column(path: Path, where: str, name: str, first: int, n: int) -> list:
    """Values `first`..`first + n - 1` of column `name` (a per-sample field, for group_by), as Python values."""
    schema, _, batches = _batches(Path(path), where)
    if name not in schema.names:
        raise ConfigError(f"{where} has no column '{name}' (group_by); its columns are {', '.join(schema.names)}.")
    values: list = []
    for batch in batches(name):
        values += batch.column(0).to_pylist()
        if len(values) >= first + n:
            break
    return values[first:first + n]


def read_records(path: Path, where: str, fields: tuple[str, ...], first: int = 0,
                 max_samples: int | None = None) -> list[tuple[int, dict]]:
    """Rows `first` on (at most `max_samples`) as (row number, record) pairs for `samples: records`: the token column
    (`input_ids` or `tokens`, lists of any length) or else a `text` column, and the columns named in `fields` that
    exist (`id`, `seen_at_step`, the group_by field's top-level column), as Python values."""
    schema, n_rows, batches = _batches(Path(path), where)
    column = next((c for c in (*COLUMNS, "text") if c in schema.names), None)
    if column is None:
        raise ConfigError(f"{where} has no token or text column: 'samples: records' needs one of "
                          f"{', '.join(COLUMNS)} (lists of token ids) or text; its columns are "
                          f"{', '.join(schema.names) or 'none'}.")
    n = _rows_to_read(where, n_rows, first, max_samples, "records")
    names = [column, *(f for f in dict.fromkeys(fields) if f in schema.names and f != column)]
    values = {name: [] for name in names}
    for name in names:
        for batch in batches(name):
            values[name] += batch.column(0).to_pylist()
            if len(values[name]) >= first + n:
                break
    key = "text" if column == "text" else "tokens"
    return [(first + i, {key: values[column][first + i],
                         **{f: values[f][first + i] for f in names[1:] if values[f][first + i] is not None}})
            for i in range(n)]
