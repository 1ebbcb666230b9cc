"""Figures from a saved report (matplotlib, no torch): pure functions of the AuditReport.

Each `fig_*` returns a Figure, or None when the report lacks that probe's data. Colours are the
Okabe-Ito palette (safe for colour-blind readers); steps go on a log axis when a series spans
more than two decades of steps (Pythia-style), with step 0 kept through a symlog axis.
"""

from __future__ import annotations

import re
from pathlib import Path

from memaudit.schema import AuditReport

PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]
LINESTYLES = ["-", "--", ":", "-."]


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"axes.prop_cycle": matplotlib.cycler(color=PALETTE), "figure.dpi": 110,
                         "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True,
                         "grid.alpha": 0.3})
    return plt


def _step_axis(ax, steps) -> None:
    positive = [s for s in steps if s]
    if positive and max(positive) / min(positive) > 100:
        ax.set_xscale("symlog", linthresh=max(1, min(positive)))
    ax.set_xlabel("training step (updates)")


def _series_curves(report: AuditReport, probe: str, metric: str):
    """(series, data set, steps, values) for a per-checkpoint scalar metric."""
    for s in report.series:
        datasets = sorted({d for c in s.checkpoints for d in c.results.get(probe, {})})
        for d in datasets:
            points = [(c.step, c.results[probe][d].get(metric)) for c in s.checkpoints
                      if c.step is not None and isinstance(c.results.get(probe, {}).get(d, {}).get(metric), (int, float))]
            if points:
                yield s, d, [p[0] for p in points], [p[1] for p in points]


def fig_memorization(report: AuditReport):
    """M over checkpoints, one line per series and data set."""
    curves = list(_series_curves(report, "memorization", "M"))
    if not curves:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    datasets = sorted({d for _, d, _, _ in curves})
    series = [s.name for s in report.series]
    for s, d, steps, values in curves:
        ax.plot(steps, values, marker="o", markersize=3, color=PALETTE[series.index(s.name) % len(PALETTE)],
                linestyle=LINESTYLES[datasets.index(d) % len(LINESTYLES)], label=f"{s.name} · {d}")
    _step_axis(ax, [x for _, _, steps, _ in curves for x in steps])
    ax.set_ylabel("exact memorization M (fraction of target tokens)")
    ax.set_ylim(0, 1.02)
    ax.set_title("Memorization over training")
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    return fig


def fig_T_vs_params(report: AuditReport):
    """T(N, tau) in steps against parameters, log-log, one line per tau (train data sets)."""
    rows = []
    for s in report.series:
        for d, r in s.results.get("memorization_series", {}).items():
            for key, value in r.items():
                m = re.fullmatch(r"T_step@([0-9.]+)", key)
                if m and value and s.n_params:
                    rows.append((float(m.group(1)), d, s.n_params, value))
    if not rows:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for i, (tau, d) in enumerate(sorted({(t, d) for t, d, _, _ in rows})):
        pts = sorted((n, t) for tt, dd, n, t in rows if (tt, dd) == (tau, d))
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", color=PALETTE[i % len(PALETTE)],
                label=f"tau = {tau} · {d}")
    from matplotlib.ticker import NullFormatter

    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("parameters N")
    ax.set_ylabel("T(N, tau): first step with M >= tau")
    ax.set_title("Larger models memorize sooner?")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def fig_pos(report: AuditReport, tags=("NOUN", "PROPN", "NUM", "VERB", "ADJ", "ADP", "DET", "PUNCT")):
    """R(p) over checkpoints for the main word classes, one panel per series (train data sets)."""
    panels = []
    for s in report.series:
        train = [d.name for d in report.datasets if d.role == "train"]
        for d in train:
            curves = {t: [(c.step, c.results["pos"][d]["R"].get(t)) for c in s.checkpoints
                          if c.step is not None and d in c.results.get("pos", {})] for t in tags}
            curves = {t: [(x, y) for x, y in pts if y is not None] for t, pts in curves.items()}
            if any(curves.values()):
                panels.append((s.name, d, curves))
    if not panels:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.8), squeeze=False, sharey=True)
    for ax, (name, d, curves) in zip(axes[0], panels):
        for i, (tag, pts) in enumerate(curves.items()):
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], color=PALETTE[i % len(PALETTE)],
                        linestyle=LINESTYLES[i // len(PALETTE) % len(LINESTYLES)] if tag not in ("NOUN", "PROPN", "NUM")
                        else "-", linewidth=2 if tag in ("NOUN", "PROPN", "NUM") else 1.2, label=tag)
        _step_axis(ax, [x for pts in curves.values() for x, _ in pts])
        ax.set_title(f"{name} · {d}", fontsize=10)
    axes[0][0].set_ylabel("R(p): share of positions memorized")
    axes[0][-1].legend(fontsize=7, loc="lower right")
    fig.suptitle("Memorization by part of speech")
    fig.tight_layout()
    return fig


def fig_forgetting(report: AuditReport):
    """Forgetting curves of special batches against steps since injection, with the fitted baseline."""
    curves = [(s, d, r) for s in report.series for d, r in s.results.get("forgetting", {}).items()
              if r.get("M_curve")]
    if not curves:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for i, (s, d, r) in enumerate(curves):
        color = PALETTE[i % len(PALETTE)]
        ax.plot(r["steps_since"], r["M_curve"], marker="o", markersize=3, color=color,
                label=f"{s.name} · {d} ({s.n_params and f'{s.n_params / 1e6:.2g}M' or '?'} params)")
        if r.get("baseline_fit") is not None and not r.get("fit_note"):
            ax.axhline(r["baseline_fit"], color=color, linestyle="--", linewidth=1)
        elif r.get("baseline_min") is not None:
            ax.axhline(r["baseline_min"], color=color, linestyle=":", linewidth=1)
    ax.set_xlabel("steps since the (last) injection of the special batch")
    ax.set_ylabel("M on the special batch")
    ax.set_title("Forgetting curves (dashed: fitted baseline b; dotted: minimum, where the fit is unreliable)",
                 fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def fig_privacy(report: AuditReport):
    """Canary exposure and membership-inference AUC over checkpoints, when the report has them."""
    exposure = list(_series_curves(report, "canaries", "exposure_max"))
    auc = list(_series_curves(report, "membership", "auc_loss"))
    if not exposure and not auc:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), squeeze=False)
    for ax, curves, label in ((axes[0][0], exposure, "canary exposure (bits)"),
                              (axes[0][1], auc, "membership-inference ROC AUC (loss)")):
        for i, (s, d, steps, values) in enumerate(curves):
            ax.plot(steps, values, marker="o", markersize=3, color=PALETTE[i % len(PALETTE)], label=f"{s.name} · {d}")
        _step_axis(ax, [x for _, _, steps, _ in curves for x in steps] or [1])
        ax.set_ylabel(label)
        if curves:
            ax.legend(fontsize=8)
    fig.suptitle("Privacy over training")
    fig.tight_layout()
    return fig


FIGURES = {"memorization": fig_memorization, "T_vs_params": fig_T_vs_params, "pos": fig_pos,
           "forgetting": fig_forgetting, "privacy": fig_privacy}


def figures(report: AuditReport) -> dict:
    """Every figure the report has data for: name -> Figure."""
    out = {}
    for name, make in FIGURES.items():
        fig = make(report)
        if fig is not None:
            out[name] = fig
    return out


def write_figures(report: AuditReport, out: Path) -> list[Path]:
    """Save every figure as `out/<name>.png`; return the paths."""
    from memaudit.atomic import atomic_write_bytes

    paths = []
    for name, fig in figures(report).items():
        path = Path(out) / f"{name}.png"
        atomic_write_bytes(path, png_bytes(fig))
        paths.append(path)
    return paths


def png_bytes(fig) -> bytes:
    """A figure as PNG bytes (and closed)."""
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    _plt().close(fig)
    return buffer.getvalue()
