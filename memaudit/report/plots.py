"""Figures from a saved report (matplotlib, no torch): pure functions of the AuditReport.

A figure belongs to its probe: a function `fig_<name>(report)` next to the probe, declared with
`@probe(..., figures=(fig_<name>,))`, returning a Figure or None when the report lacks its data;
this module holds the shared style and helpers and draws what the report's probes declare, the figure functions
given by the caller (it imports no probe and nothing of the engine; memaudit.plots, for notebooks, finds
them). Colours are the
Okabe-Ito palette (safe for colour-blind readers); steps go on a log axis when a series spans
more than two decades of steps (Pythia-style), with step 0 kept through a symlog axis.
"""

from __future__ import annotations

from pathlib import Path

from memaudit.results.schema import AuditReport

PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]
LINESTYLES = ["-", "--", ":", "-."]


def pyplot():
    """matplotlib's pyplot with memaudit's style (Agg backend, colour-blind-safe palette); a ConfigError that
    says what to install when matplotlib is missing."""
    try:
        import matplotlib
    except ImportError:
        from memaudit.errors import ConfigError

        raise ConfigError("Figures need matplotlib, which is not installed: `pip install \"memaudit-lm[plot]\"` (or "
                          "`pip install matplotlib`).") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"axes.prop_cycle": matplotlib.cycler(color=PALETTE), "figure.dpi": 110,
                         "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True,
                         "grid.alpha": 0.3, "text.usetex": False})
    return plt


def step_axis(ax, steps) -> None:
    """Steps on the x axis; symlog when they span more than two decades."""
    positive = [s for s in steps if s]
    if positive and max(positive) / min(positive) > 100:
        ax.set_xscale("symlog", linthresh=max(1, min(positive)))
    ax.set_xlabel("training step (updates)")


def series_curves(report: AuditReport, probe: str, metric: str):
    """(series, data set, steps, values) for a per-checkpoint scalar metric."""
    for s in report.series:
        datasets = sorted({d for c in s.checkpoints for d in c.results.get(probe, {})})
        for d in datasets:
            points = [(c.step, c.results[probe][d].get(metric)) for c in s.checkpoints
                      if c.step is not None and isinstance(c.results.get(probe, {}).get(d, {}).get(metric), (int, float))]
            if points:
                yield s, d, [p[0] for p in points], [p[1] for p in points]


def grouped(report: AuditReport, curves) -> list[tuple[str, object, str, list, list, list | None]]:
    """Curves (series, data set, xs, ys) merged over seed replicates (report.replicates): (label, first series,
    data set, xs, mean, standard deviation or None) per group and data set on the xs every seed has; a
    series outside any group is its own curve with no spread."""
    from memaudit.results.replicates import spread

    group_of = {name: g for g in report.replicates for name in g.series}
    merged: dict[tuple, list] = {}
    for s, d, xs, ys in curves:
        g = group_of.get(s.name)
        merged.setdefault((g.name if g else s.name, d), []).append((s, dict(zip(xs, ys)), g))
    out = []
    for (label, d), members in merged.items():
        first, _, g = members[0]
        xs = sorted(set.intersection(*(set(points) for _, points, _ in members)))
        if g is None or len(members) < 2:
            out.append((label, first, d, xs, [members[0][1][x] for x in xs], None))
            continue
        spreads = [spread([points[x] for _, points, _ in members]) for x in xs]
        means, sds = [s.mean for s in spreads], [s.std for s in spreads]
        out.append((f"{label} (mean ± sd, {len(members)} seeds)", first, d, xs, means, sds))
    return out


def draw(ax, xs, mean, sd, color, **style) -> None:
    """A curve, with a band of ± one standard deviation when there is one."""
    ax.plot(xs, mean, color=color, **style)
    if sd is not None:
        ax.fill_between(xs, [m - e for m, e in zip(mean, sd)], [m + e for m, e in zip(mean, sd)], color=color,
                        alpha=0.18, linewidth=0)


def figure_list(report: AuditReport, makers=()) -> list[tuple[str, object, str]]:
    """Every figure the report's probes declare and have data for: (name, Figure, caption), the caption being the
    first sentence of the figure function's docstring (what to look for). `makers`: (probe name, figure function)
    pairs, as memaudit.engine.registry.figure_makers collects them from the standard probes and the probe files the
    caller names (never from paths named in the report: plotting a report received from someone else runs no code
    of theirs); this module reads only the report."""
    import inspect

    from memaudit.report.escape import escaped_report, figure_text

    report = escaped_report(report, figure_text)  # names are data: `$` is no math text, controls drawn as escapes
    ran = {p.name for p in report.probes} | {name for s in report.series for name in s.results} | \
        {name for s in report.series for c in s.checkpoints for name in c.results}
    out = []
    for probe_name, make in makers:
        fig = make(report) if probe_name in ran else None
        if fig is not None:
            caption = " ".join((inspect.getdoc(make) or "").split("\n\n")[0].split())
            out.append((make.__name__.removeprefix("fig_"), fig, caption))
    return out


def figures(report: AuditReport, makers=()) -> dict:
    """Every figure the report's probes declare and have data for: name -> Figure (`makers` as for figure_list)."""
    return {name: fig for name, fig, _ in figure_list(report, makers)}


def write_figures(report: AuditReport, out: Path, makers=()) -> list[Path]:
    """Save every figure as `out/<name>.png`; return the paths."""
    from memaudit.atomic import atomic_write_bytes

    paths = []
    for name, fig in figures(report, makers).items():
        path = Path(out) / f"{name}.png"
        atomic_write_bytes(path, png_bytes(fig))
        paths.append(path)
    return paths


def png_bytes(fig) -> bytes:
    """A figure as PNG bytes (and closed)."""
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    pyplot().close(fig)
    return buffer.getvalue()
