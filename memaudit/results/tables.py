"""A report as flat tables: one row per metric value, and one row per sample in the per-sample schema
(memaudit.results.samples), from the report's own per-sample tables (`per_sample: true`) or from the Parquet
files `--samples-out` wrote.

Plain lists of dicts (no pandas needed): `memaudit show --csv` and `--samples-csv` write them;
`AuditReport.to_frame()` and `AuditReport.samples_frame()` make pandas DataFrames of them. The functions take
that report (memaudit.results.schema.AuditReport), which imports this module for those methods: nothing here
imports it back.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from memaudit.errors import ConfigError
from memaudit.results.samples import KEY_COLUMNS, probe_column
from memaudit.results.values import ALL, flat_metrics, is_number, is_table

METRIC_COLUMNS = ("series", "checkpoint", "step", "tokens_seen", "n_params", "probe", "kind", "dataset", "metric",
                  "value")
"""series; checkpoint (None for a series probe); step, tokens_seen, n_params of the checkpoint (series probe:
n_params of the series); probe and its kind (checkpoint or series); data set; metric; value (a number)."""
SAMPLE_COLUMNS = tuple(c.name for c in KEY_COLUMNS)
"""Columns of every per-sample row, before the probes' (see memaudit.results.samples)."""
INTEGER_COLUMNS = ("step", "tokens_seen", "n_params", "sample_index", "seen_at_step")
"""Columns of whole numbers that may be missing: nullable integers in a DataFrame, not floats."""


def metric_rows(report) -> list[dict]:
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


def sample_rows(report) -> list[dict]:
    """One row per sample of every data set a probe listed with `per_sample: true` (memorization: id, M, loss,
    extractable, match_len; membership: its scores), the probes' values of one sample on one row, in the
    per-sample schema. `seen_at_step` is not in these tables (`--samples-out` has it)."""
    rows: dict[tuple, dict] = {}
    groups = {d.name for d in report.datasets if d.group_of is not None}  # their samples are their data set's rows
    declared = {p.name: p.columns for p in report.probes}
    for s in report.series:
        for c in s.checkpoints:
            for probe, per_dataset in c.results.items():
                for dataset, metrics in per_dataset.items():
                    if dataset in groups:
                        continue
                    table = metrics.get("samples")
                    if is_table(table):
                        _merge(rows, table, probe, dataset if dataset != ALL else None,
                               {"series": s.name, "checkpoint": c.name, "step": c.step, "tokens_seen": c.tokens_seen},
                               declared.get(probe))
    return list(rows.values())


def _merge(rows: dict, table: dict, probe: str, dataset: str | None, where: dict, declared: dict | None) -> None:
    """Add one probe's per-sample table to `rows` (keyed by series, checkpoint, data set and sample id), its columns
    named as the probe declared them (`declared`, from the report's ProbeInfo)."""
    n = len(next(iter(table.values())))
    datasets = table.get("dataset") or [dataset] * n
    index: dict[str, int] = {}
    for i in range(n):
        position = index[datasets[i]] = index.get(datasets[i], -1) + 1  # the sample's place in its data set
        key = (where["series"], where["checkpoint"], datasets[i], table["id"][i])
        row = rows.setdefault(key, {**where, "dataset": datasets[i], "sample_index": position,
                                    "sample_id": str(table["id"][i]), "seen_at_step": None})
        for name, values in table.items():
            if name not in ("id", "dataset", "member"):  # the data set says who is a member
                row[probe_column(probe, name, declared).name] = values[i]


def samples_files(report, folder: str | Path | None = None) -> list[Path]:
    """The Parquet files `--samples-out` wrote for the report's checkpoints, under `folder` (default: the
    folder the report names, `provenance.samples_out`), each checked against the SHA-256 the report recorded: a
    file that is gone, or that another run has since written over, is a ConfigError (never other rows)."""
    from memaudit.atomic import file_sha256

    root = folder or report.provenance.samples_out
    if root is None:
        return []
    files = []
    for s in report.series:
        for c in (c for c in s.checkpoints if c.samples_file):
            path = Path(root) / c.samples_file.file
            if not path.is_file():
                raise ConfigError(f"The per-sample file of {s.name}/{c.name} ('{path}') is missing, so the rows of "
                                  "this report cannot all be read. Re-run the audit with `--samples-out "
                                  f"{root}` (the journal makes it quick), or pass the folder that holds the files.")
            if c.samples_file.sha256 is not None and file_sha256(path) != c.samples_file.sha256:
                raise ConfigError(f"The per-sample file of {s.name}/{c.name} ('{path}') is not the one this report "
                                  "wrote (another run has written over it since): its rows belong to that run. Read "
                                  "the newer report's rows, or re-run this audit with `--samples-out` to a folder of "
                                  "its own.")
            files.append(path)
    return files


def parquet_rows(files: list[Path]) -> list[dict]:
    """The rows of `--samples-out` files (needs pyarrow)."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ConfigError("Reading --samples-out files needs pyarrow: `pip install pyarrow` (or "
                          "memaudit-lm[parquet]).") from None
    return [row for f in files for row in pq.read_table(f).to_pylist()]


def report_sample_rows(report, folder: str | Path | None = None) -> list[dict]:
    """Every per-sample row of a report: its own tables, or else its `--samples-out` files; none (with a
    warning that says how to get them) when it has neither."""
    rows = sample_rows(report)
    if rows:
        return rows
    files = samples_files(report, folder)
    if files:
        return parquet_rows(files)
    warnings.warn("This report holds no per-sample values: run the audit with `--samples-out DIR` (Parquet files, "
                  "any number of samples; then `samples_frame()` reads them, or pass folder=DIR), or give the "
                  "probes `per_sample: true` in the yaml (a table inside the report).", stacklevel=3)
    return []


def frame(rows: list[dict], columns: tuple[str, ...]):
    """A pandas DataFrame of the rows, whole-number columns as nullable integers (pandas is an optional extra:
    `pip install memaudit-lm[frames]`)."""
    try:
        import pandas as pd
    except ImportError:
        raise ConfigError("Tables as DataFrames need pandas: `pip install pandas` (or memaudit-lm[frames]). "
                          "Without it, `memaudit show REPORT.json --csv PATH` writes the same table.") from None
    names = list(dict.fromkeys([*columns, *(k for row in rows for k in row)]))
    out = pd.DataFrame(rows, columns=names)
    for name in INTEGER_COLUMNS:
        if name in out:
            out[name] = out[name].astype("Int64")
    return out


def wide(metrics_frame):
    """The metric frame (`to_frame()`) as one row per series, checkpoint and data set, a column per
    `probe.metric`: `report.to_frame(wide=True)`."""
    index = ["series", "checkpoint", "step", "tokens_seen", "dataset"]
    per_checkpoint = metrics_frame[metrics_frame.kind == "checkpoint"].copy()
    per_checkpoint["metric"] = per_checkpoint.probe + "." + per_checkpoint.metric
    out = per_checkpoint.set_index([*index, "metric"])["value"].unstack("metric").reset_index()
    out.columns.name = None
    for name in ("step", "tokens_seen"):
        out[name] = out[name].astype("Int64")
    return out
