"""`--samples-out DIR`: every checkpoint's per-sample tables as one Parquet file, outside the report.

Probes list their samples in a `samples` metric (columns of equal length, e.g. memorization's and membership's
with `per_sample`). With an output folder, those tables are joined into one row per sample (data set, index,
id, training step seen when known, then `<probe>.<column>`), written atomically to
`DIR/<series>/<checkpoint>.parquet` (file names are a readable slug plus a hash of the exact name, so no
name from the yaml can reach outside DIR), and replaced in the report and the journal by a pointer
`{"file": ..., "rows": n}`. A journal record whose file has gone is recomputed. Readable with pandas, polars
or `datasets` without memaudit.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from memaudit.errors import ConfigError
from memaudit.report.schema import is_table

SAMPLES = "samples"


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


def sample_rows(results: dict, samples: dict) -> list[dict]:
    """One row per sample of every data set a probe listed (`results`: probe -> data set -> metrics;
    `samples`: data set name -> memaudit.inputs.data.Samples, for the index and the training step)."""
    rows: dict[tuple[str, str], dict] = {}
    for probe, per_dataset in results.items():
        for dataset, metrics in (per_dataset or {}).items():
            table = (metrics or {}).get(SAMPLES)
            if not is_table(table) or "id" not in table:
                continue
            n = len(table["id"])
            names = table.get("dataset") or [dataset] * n
            for i in range(n):
                row = rows.setdefault((names[i], str(table["id"][i])), {})
                row.update({f"{probe}.{col}": values[i] for col, values in table.items() if col not in ("id", "dataset")})
    out = []
    for name, s in samples.items():
        position = {sid: i for i, sid in enumerate(s.ids)}
        for (dataset, sid), values in rows.items():
            if dataset == name and sid in position:
                i = position[sid]
                out.append({"dataset": dataset, "index": i, "id": sid,
                            "seen_at_step": int(s.steps[i]) if s.steps is not None else None, **values})
    return out


def export(root: Path, series: str, result, samples: dict):
    """Write `result`'s sample tables to their Parquet file and return the result with pointers instead."""
    rows = sample_rows(result.results, samples)
    if not rows:
        return result
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = file_for(root, series, result.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = list(dict.fromkeys(k for row in rows for k in row))
    table = pa.table({c: [row.get(c) for row in rows] for c in columns})
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)
    pointer = {"file": str(path.relative_to(root)), "rows": len(rows)}
    results = {probe: {d: ({**m, SAMPLES: pointer} if is_table((m or {}).get(SAMPLES)) else m)
                       for d, m in per_dataset.items()} for probe, per_dataset in result.results.items()}
    return result.model_copy(update={"results": results})


def files_present(root: Path, record) -> bool:
    """Whether every Parquet file a journal record points to is still there."""
    for per_dataset in record.results.values():
        for metrics in (per_dataset or {}).values():
            pointer = (metrics or {}).get(SAMPLES)
            if isinstance(pointer, dict) and "file" in pointer and not (Path(root) / pointer["file"]).is_file():
                return False
    return True
