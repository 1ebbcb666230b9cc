"""`--samples-out DIR`: every checkpoint's per-sample values as one Parquet file, outside the report.

A row per sample of every data set that a probe with a rows function read (memorization: M, loss, greedy
verdict, match length; membership: its scores): `dataset`, `index` (position in the data set), `id`,
`seen_at_step` (when the data says), then `<probe>.<column>` (null where a probe did not read that data
set). One row group per shard, so the file is written without holding more than a shard's rows as Arrow
data. The file goes to `DIR/<series>/<checkpoint>.parquet` (a readable slug plus a hash of the exact name,
so no name from the yaml can reach outside DIR), written to a new temporary file of a unique name (never
through a link) and renamed when complete; a file that cannot be written (disk full) is named in the report's
`unwritten` and the run goes on;
the checkpoint's result records it (`samples_file`, with the file's SHA-256). A journal record whose file
has gone or changed (another run wrote over it) is recomputed (its shards come back from the shard journal).
Readable with pandas, polars or `datasets`, without memaudit.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

import numpy as np

from memaudit.atomic import explain_write_error
from memaudit.errors import ConfigError
from memaudit.report.schema import SamplesFile


def require_pyarrow() -> None:
    """Fail before anything runs when pyarrow, which writes Parquet, is missing."""
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise ConfigError("--samples-out writes Parquet files, which needs pyarrow: `pip install pyarrow` (or "
                          "memaudit-lm[parquet]).") from None


def safe_name(name: str) -> str:
    """A file name for a series or checkpoint name: its safe characters and a hash of the whole name."""
    slug = re.sub(r"[^A-Za-z0-9_.-]", "_", name).lstrip(".")[:60] or "_"
    return f"{slug}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


def file_for(root: Path, series: str, checkpoint: str) -> Path:
    """Where one checkpoint's samples go."""
    return Path(root) / safe_name(series) / f"{safe_name(checkpoint)}.parquet"


def _schema(rows: dict):
    """One schema for every data set's rows: the sample columns, then `<probe>.<column>` in probe order."""
    import pyarrow as pa

    fields = [("dataset", pa.string()), ("index", pa.int64()), ("id", pa.string()), ("seen_at_step", pa.int64())]
    for probe, per_dataset in rows.items():
        for columns in per_dataset.values():
            for col, values in columns.items():
                field = (f"{probe}.{col}", pa.from_numpy_dtype(values.dtype))
                if field[0] not in {f[0] for f in fields}:
                    fields.append(field)
    return pa.schema(fields)


def _batches(name: str, s, rows: dict, parts: list[slice], schema):
    """Data set `name`'s rows as one Arrow record batch per shard."""
    import pyarrow as pa

    for part in parts:
        n = part.stop - part.start
        values = {"dataset": pa.array([name] * n, pa.string()),
                  "index": pa.array(np.arange(part.start, part.stop, dtype=np.int64)),
                  "id": pa.array([str(sid) for sid in s.ids[part]], pa.string()),
                  "seen_at_step": pa.array(s.steps[part], pa.int64()) if s.steps is not None else pa.nulls(n, pa.int64())}
        for probe, per_dataset in rows.items():
            for col, column in (per_dataset.get(name) or {}).items():
                values[f"{probe}.{col}"] = pa.array(column[part])
        yield pa.record_batch([values.get(f.name, pa.nulls(n, f.type)) for f in schema], schema=schema)


def export(root: Path, series: str, result, samples: dict, rows: dict, parts: dict):
    """Write the per-sample columns of one checkpoint (`rows`: probe -> data set -> columns; `parts`: data set
    -> its shards) to its Parquet file; return the result with `samples_file` set (unchanged when no probe
    has per-sample columns)."""
    names = [name for name in samples if any(name in per_dataset for per_dataset in rows.values())]
    if not names:
        return result
    import pyarrow.parquet as pq

    path = file_for(root, series, result.name)
    schema = _schema(rows)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # a new file of a unique name (O_EXCL: a planted link is never followed, two runs never share it)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f, pq.ParquetWriter(f, schema) as writer:
            for name in names:
                for batch in _batches(name, samples[name], rows, parts[name], schema):
                    writer.write_batch(batch)
        digest = file_sha256(Path(tmp))
        os.replace(tmp, path)  # replaces a link at `path` itself, never its target
    except OSError as e:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise explain_write_error(path, e) from e
    n = sum(len(samples[name].tokens) for name in names)
    return result.model_copy(update={"samples_file": SamplesFile(file=str(path.relative_to(root)), rows=n,
                                                                 sha256=digest)})


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, read in chunks of 1 MiB."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def file_intact(root: Path, record) -> bool:
    """Whether a journal record's Parquet file is under `root` as it was written (a record written without
    --samples-out, whose file has gone, or whose file another run has since written over, is computed again)."""
    if record.samples_file is None or record.samples_file.sha256 is None:
        return False
    path = Path(root) / record.samples_file.file
    return path.is_file() and file_sha256(path) == record.samples_file.sha256
