"""A report as flat tables: one row per metric value, and one row per sample where a probe listed its samples.

Plain lists of dicts (no pandas needed): `memaudit show --csv` writes them; `AuditReport.to_frame()` and
`AuditReport.samples_frame()` make pandas DataFrames of them when pandas is installed.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from memaudit.atomic import atomic_write_text
from memaudit.report.escape import csv_cell
from memaudit.report.schema import AuditReport, flat_metrics, is_number, is_table

METRIC_COLUMNS = ("series", "checkpoint", "step", "tokens_seen", "n_params", "probe", "kind", "dataset", "metric",
                  "value")
"""series; checkpoint (None for a series probe); step, tokens_seen, n_params of the checkpoint (series probe:
n_params of the series); probe and its kind (checkpoint or series); data set; metric; value (a number)."""
SAMPLE_COLUMNS = ("series", "checkpoint", "step", "tokens_seen", "probe", "dataset")
"""Columns of every per-sample row, before the probe's own (id, M, loss, ...)."""


def metric_rows(report: AuditReport) -> list[dict]:
    """One row per (series, checkpoint, probe, data set, metric) whose value is a number, a bool (as 0/1) or
    None (not available); a mapping of such values (per canary, per tag) gives one row per key, named
    `metric[key]`. Curves, lists and texts are left out (they are in the JSON)."""
    rows = []
    for s in report.series:
        for c in s.checkpoints:
            where = {"series": s.name, "checkpoint": c.name, "step": c.step, "tokens_seen": c.tokens_seen,
                     "n_params": c.n_params if c.n_params is not None else s.n_params}
            rows += _rows(where, c.results, "checkpoint")
        where = {"series": s.name, "checkpoint": None, "step": None, "tokens_seen": None, "n_params": s.n_params}
        rows += _rows(where, s.results, "series")
    return rows


def _rows(where: dict, results: dict, kind: str) -> list[dict]:
    rows = []
    for probe, per_dataset in results.items():
        for dataset, metrics in per_dataset.items():
            for metric, v in flat_metrics(metrics).items():
                if v is None or isinstance(v, bool) or is_number(v):
                    rows.append({**where, "probe": probe, "kind": kind, "dataset": dataset, "metric": metric,
                                 "value": float(v) if isinstance(v, bool) else v})
    return rows


def sample_rows(report: AuditReport) -> list[dict]:
    """One row per sample of every probe result that lists its samples (a `samples` metric: a mapping of
    equal-length columns, e.g. memorization's and membership's with `per_sample: true`)."""
    rows = []
    for s in report.series:
        for c in s.checkpoints:
            for probe, per_dataset in c.results.items():
                for dataset, metrics in per_dataset.items():
                    columns = metrics.get("samples")
                    if not is_table(columns):
                        continue
                    where = {"series": s.name, "checkpoint": c.name, "step": c.step, "tokens_seen": c.tokens_seen,
                             "probe": probe, "dataset": dataset}
                    n = len(next(iter(columns.values())))
                    rows += [{**where, **{name: values[i] for name, values in columns.items()}} for i in range(n)]
    return rows


def to_csv(rows: list[dict], columns: tuple[str, ...] = ()) -> str:
    """Rows as CSV text: `columns` first, then any other keys in the order they appear; a text cell that a
    spreadsheet would read as a formula is written as text (memaudit.report.escape.csv_cell)."""
    names = list(dict.fromkeys([*columns, *(k for row in rows for k in row)]))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([csv_cell(name) for name in names])
    writer.writerows([csv_cell(row.get(name, "")) for name in names] for row in rows)
    return out.getvalue()


def write_csv(rows: list[dict], path: str | Path, columns: tuple[str, ...] = ()) -> None:
    """Write rows as CSV, atomically."""
    atomic_write_text(path, to_csv(rows, columns))


def frame(rows: list[dict], columns: tuple[str, ...]):
    """A pandas DataFrame of the rows (pandas is an optional extra: `pip install memaudit-lm[frames]`)."""
    try:
        import pandas as pd
    except ImportError:
        from memaudit.errors import ConfigError

        raise ConfigError("Tables as DataFrames need pandas: `pip install pandas` (or memaudit-lm[frames]). "
                          "Without it, `memaudit show REPORT.json --csv PATH` writes the same table.") from None
    names = list(dict.fromkeys([*columns, *(k for row in rows for k in row)]))
    return pd.DataFrame(rows, columns=names)
