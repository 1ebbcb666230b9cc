"""`--samples-out DIR`: every checkpoint's per-sample values as one Parquet file, outside the report.

A row per sample of every data set that a probe with a rows function read (memorization: M, loss, greedy
verdict, match length; membership: its scores; extraction_risk: log10 p_z per scheme and pair), in the
per-sample schema of memaudit.results.samples: the key columns (series, checkpoint, step, tokens_seen,
dataset, sample_index, sample_id, seen_at_step), the data's group_by field, then each probe's columns (null
where a probe did not read that data set), every column described in the file's metadata. One row group per
shard, so the file is written without holding more than a shard's rows as Arrow data. A folder of these
files reads as one table (pandas, pyarrow.dataset, polars, `datasets`): each row says which series and
checkpoint it belongs to. The file goes to `DIR/<series>/<checkpoint>.parquet` (a readable slug plus a hash
of the exact name, so no name from the yaml can reach outside DIR), written to a new temporary file of a
unique name (never through a link) and renamed when complete; a file that cannot be written (disk full) is
named in the report's `unwritten` and the run goes on. The checkpoint's result records the file
(`samples_file`, with its SHA-256). A journal record whose file has gone or changed (another run wrote over
it) is recomputed (its shards come back from the shard journal).
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

import numpy as np

from memaudit.atomic import explain_write_error, file_sha256
from memaudit.errors import ConfigError
from memaudit.results.schema import SamplesFile


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


def _field_columns(samples: dict) -> list:
    """A column per per-sample field of the data (group_by), `data_<field>`, typed by its values."""
    from memaudit.results.samples import DTYPES, SampleColumn

    return list({f"data_{name}": SampleColumn(f"data_{name}", DTYPES.get(values.dtype.kind, "string"),
                                              f"the data's per-sample field '{name}' (group_by)")
                 for s in samples.values() for name, values in s.fields.items()}.values())


def _schema(rows: dict, provenance: dict, extra: list = (), declared: dict | None = None):
    """The per-sample schema (memaudit.results.samples) of these rows: the key columns, then each probe's columns as
    it declares them (`declared`: probe -> its `columns`), every field and the file described in the metadata (so a
    file explains itself: meaning, unit, what a higher value says)."""
    import json

    import pyarrow as pa

    from memaudit.version import __version__
    from memaudit.results.samples import KEY_COLUMNS, probe_column

    types = {"string": pa.string(), "int64": pa.int64(), "float64": pa.float64(), "bool": pa.bool_()}
    columns = [*KEY_COLUMNS, *extra]
    for probe, per_dataset in rows.items():
        for columns_of_dataset in per_dataset.values():
            for name, values in columns_of_dataset.items():
                c = probe_column(probe, name, (declared or {}).get(probe), np.asarray(values).dtype.kind)
                if c.name not in {k.name for k in columns}:
                    columns.append(c)
    fields = [pa.field(c.name, types[c.type], metadata={"description": c.meaning,
                                                       **({"unit": c.unit} if c.unit else {}),
                                                       **({"higher_means": c.higher} if c.higher else {})})
              for c in columns]
    about = {"memaudit_version": __version__, **provenance, "schema": "memaudit per-sample rows, see "
             "memaudit.results.samples", "columns": {c.name: c.meaning for c in columns}}
    return pa.schema(fields, metadata={"memaudit": json.dumps(about)})


def _batches(name: str, s, rows: dict, parts: list[slice], schema, where: dict, declared: dict | None = None):
    """Data set `name`'s rows as one Arrow record batch per shard (`where`: series, checkpoint, step, tokens_seen)."""
    import pyarrow as pa

    from memaudit.results.samples import probe_column

    for part in parts:
        n = part.stop - part.start
        values = {key: pa.array([value] * n, schema.field(key).type) for key, value in where.items()}
        values.update({"dataset": pa.array([name] * n, pa.string()),
                       "sample_index": pa.array(np.arange(part.start, part.stop, dtype=np.int64)),
                       "sample_id": pa.array([str(sid) for sid in s.ids[part]], pa.string()),
                       "seen_at_step": pa.array(s.steps[part], pa.int64()) if s.steps is not None else
                       pa.nulls(n, pa.int64())})
        for field, array in s.fields.items():
            values[f"data_{field}"] = pa.array(array[part].tolist(), schema.field(f"data_{field}").type)
        for probe, per_dataset in rows.items():
            for col, array in (per_dataset.get(name) or {}).items():
                name_here = probe_column(probe, col, (declared or {}).get(probe), array.dtype.kind).name
                part_values = array[part].tolist() if array.dtype.kind == "U" else array[part]  # arrow ends a numpy
                values[name_here] = pa.array(part_values).cast(schema.field(name_here).type)  # str at its first NUL
        yield pa.record_batch([values.get(f.name, pa.nulls(n, f.type)) for f in schema], schema=schema)


def export(root: Path, series: str, result, samples: dict, rows: dict, parts: dict, provenance: dict | None = None,
           declared: dict | None = None):
    """Write the per-sample columns of one checkpoint (`rows`: probe -> data set -> columns; `parts`: data set
    -> its shards; `declared`: probe -> the columns it declares) to its Parquet file; return the result with
    `samples_file` set (unchanged when no probe has per-sample columns). `provenance` goes into the file's metadata
    (the report's `config_hash` and the checkpoint's journal key: what the numbers depend on, so the same inputs
    write the same bytes)."""
    names = [name for name in samples if any(name in per_dataset for per_dataset in rows.values())]
    if not names:
        return result
    import pyarrow.parquet as pq

    path = file_for(root, series, result.name)
    schema = _schema(rows, provenance or {}, _field_columns({name: samples[name] for name in names}), declared)
    where = {"series": series, "checkpoint": result.name, "step": result.step, "tokens_seen": result.tokens_seen}
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # a new file of a unique name (O_EXCL: a planted link is never followed, two runs never share it)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f, pq.ParquetWriter(f, schema) as writer:
            for name in names:
                for batch in _batches(name, samples[name], rows, parts[name], schema, where, declared):
                    writer.write_batch(batch)
        digest = file_sha256(Path(tmp))
        os.replace(tmp, path)  # replaces a link at `path` itself, never its target
        tmp = None
    except OSError as e:
        raise explain_write_error(path, e) from e
    finally:  # whatever stopped the write (disk full, values Arrow refuses, Ctrl-C): no half-written file stays
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
    n = sum(len(samples[name].tokens) for name in names)
    return result.model_copy(update={"samples_file": SamplesFile(file=str(path.relative_to(root)), rows=n,
                                                                 sha256=digest)})


def prune(root: Path, series: str, checkpoints: list[str]) -> list[Path]:
    """Remove the files of `series` under `root` that belong to none of its `checkpoints` (a checkpoint dropped
    from the series since an earlier run wrote it), so that the folder read as one table holds this series'
    checkpoints only. Returns the files removed."""
    folder = Path(root) / safe_name(series)
    keep = {file_for(root, series, name).name for name in checkpoints}
    stale = [f for f in folder.glob("*.parquet") if f.name not in keep] if folder.is_dir() else []
    for f in stale:
        f.unlink(missing_ok=True)
    return stale


def file_intact(root: Path, record) -> bool:
    """Whether a journal record's Parquet file is under `root` as it was written (a record written without
    --samples-out, whose file has gone, or whose file another run has since written over, is computed again)."""
    if record.samples_file is None or record.samples_file.sha256 is None:
        return False
    path = Path(root) / record.samples_file.file
    return path.is_file() and file_sha256(path) == record.samples_file.sha256
