"""Figures of a report, for notebooks, scripts and probe files (`from memaudit import plots`): the shared style and
helpers of memaudit.report.plots (`pyplot`, `PALETTE`, `LINESTYLES`, `step_axis`, `series_curves`, `grouped`,
`draw`, `png_bytes`), and `figures` / `write_figures`, which find the figure functions themselves: those of the
standard probes and of the probe files named. The renderers in memaudit.report take those functions as an
argument, since they read only the report and import no probe.
"""

from __future__ import annotations

from pathlib import Path

from memaudit.report import plots as _renderers
from memaudit.report.plots import (
    LINESTYLES,
    PALETTE,
    draw,
    grouped,
    png_bytes,
    pyplot,
    series_curves,
    step_axis,
)

__all__ = [
    "LINESTYLES",
    "PALETTE",
    "draw",
    "figures",
    "grouped",
    "png_bytes",
    "pyplot",
    "series_curves",
    "step_axis",
    "write_figures",
]


def figures(report, probe_paths=()) -> dict:
    """Every figure the report's probes declare and have data for: name -> Figure; the figure functions come from
    the standard probes and the probe files in `probe_paths` (never from paths named in the report)."""
    from memaudit.engine.registry import figure_makers

    return _renderers.figures(report, figure_makers(probe_paths))


def write_figures(report, out: Path, probe_paths=()) -> list[Path]:
    """Save every figure as `out/<name>.png`; return the paths."""
    from memaudit.engine.registry import figure_makers

    return _renderers.write_figures(report, out, figure_makers(probe_paths))
