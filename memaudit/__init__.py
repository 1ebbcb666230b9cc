"""memaudit: pytest-style memorization audits for series of language-model checkpoints.

The package in layers, in the direction data flows:
    results/       the data model of a run: the report's schema, per-sample schema, values, checks, replicates
    inputs/        checkpoints.yaml, checkpoint series, data sets, ledgers, canaries, text passes
    engine/        the one forward pass, the products table and caches, the journal, probes, the run loop
    report/        renderers of a saved report: terminal, HTML, figures, JUnit, CSV; the output media
    integrations/  the command line and the pytest plugin
    lab/           trains tiny model series to audit

Probe authors need only `probe`, `series_probe` (with `DatasetName` / `SeriesName` for parameters that
name a data set or series, `Column` for the per-sample columns of a rows function), `memaudit.measures` for the
measures probes share and, for figures, `plots`; notebooks and training loops `audit`, `audit_model` and
`LiveSeries` (memaudit.api). Nothing here imports torch.
"""

from memaudit.api import LiveSeries, audit, audit_model
from memaudit.engine.registry import DatasetName, SeriesName, probe, series_probe
from memaudit.results.samples import Column
from memaudit.version import __version__

__all__ = ["audit", "audit_model", "LiveSeries", "probe", "series_probe", "Column", "DatasetName", "SeriesName",
           "plots", "AuditReport", "read_report", "__version__"]


def __getattr__(name: str):
    """`plots` (memaudit/plots.py), `AuditReport` and `read_report` on first use (they import matplotlib's helpers,
    pydantic)."""
    if name == "plots":
        import importlib

        return importlib.import_module("memaudit.plots")
    if name in ("AuditReport", "read_report"):
        from memaudit.results import schema

        return getattr(schema, name)
    raise AttributeError(f"module 'memaudit' has no attribute {name!r}")
