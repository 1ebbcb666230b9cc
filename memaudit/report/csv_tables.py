"""The report's tables as CSV (the `csv` and `samples-csv` output media): one row per number, or per sample."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from memaudit.atomic import atomic_write_text
from memaudit.report.escape import csv_cell
from memaudit.results.schema import AuditReport
from memaudit.results.tables import METRIC_COLUMNS, SAMPLE_COLUMNS, metric_rows, report_sample_rows


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


def write_metrics_csv(report: AuditReport, path: str | Path) -> None:
    """The `csv` medium: every metric of the report, one row per number."""
    write_csv(metric_rows(report), path, METRIC_COLUMNS)


def write_samples_csv(report: AuditReport, path: str | Path) -> None:
    """The `samples-csv` medium: every sample's values, one row per sample."""
    write_csv(report_sample_rows(report), path, SAMPLE_COLUMNS)
