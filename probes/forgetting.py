"""Forgetting: M on a special batch after the series trained on it (Tirumala et al. 2022, sec. 6).

The curve is M(special) at every checkpoint from the (last) injection on, against steps since
injection. The forgetting baseline is its floor: the minimum M after injection, and the asymptote
b of a least-squares fit M(t) = b + a * exp(-t / lambda).
"""

from __future__ import annotations

import math

import numpy as np

from memaudit import plots, series_probe

FIT_MIN_POINTS = 4  # three parameters and at least one degree of freedom


def fit_exponential_decay(t, m) -> dict:
    """Least-squares fit of m = b + a * exp(-t / lam).

    For each lam (a log grid, then scipy's bounded scalar minimisation around the best grid point) b and a
    are a linear least-squares solve (variable projection); standard errors come from the Jacobian at the
    optimum. Returns b, a, lam with their standard errors and the rmse, or a `note` saying why there is no fit.
    """
    t, m = np.asarray(t, dtype=float), np.asarray(m, dtype=float)
    if len(t) < FIT_MIN_POINTS:
        return {"note": f"not enough checkpoints to fit ({len(t)} after injection, need {FIT_MIN_POINTS})"}
    span = float(t.max() - t.min()) or 1.0

    def solve(log_lam):
        e = np.exp(-t / math.exp(log_lam))
        X = np.stack([np.ones_like(t), e], axis=1)  # (points, 2)
        coef, *_ = np.linalg.lstsq(X, m, rcond=None)
        return float(((X @ coef - m) ** 2).sum()), coef

    from scipy.optimize import minimize_scalar

    grid = np.linspace(math.log(span / 1000), math.log(span * 10), 200)
    best = int(np.argmin([solve(g)[0] for g in grid]))
    lo, hi = grid[max(best - 1, 0)], grid[min(best + 1, len(grid) - 1)]
    log_lam = float(minimize_scalar(lambda g: solve(g)[0], bounds=(lo, hi), method="bounded",
                                    options={"xatol": 1e-12}).x)
    sse, (b, a) = solve(log_lam)
    lam = math.exp(log_lam)
    e = np.exp(-t / lam)
    J = np.stack([np.ones_like(t), e, a * t / lam**2 * e], axis=1)  # d m / d (b, a, lam)
    dof = len(t) - 3
    stderr = [None, None, None]
    if dof > 0:
        try:
            cov = np.linalg.inv(J.T @ J) * (sse / dof)
            stderr = [float(math.sqrt(v)) if v >= 0 else None for v in np.diag(cov)]
        except np.linalg.LinAlgError:
            pass
    note = None
    first_gap = float(np.min(t[t > t.min()] - t.min())) if (t > t.min()).any() else span
    if lam < first_gap / 2:
        note = (f"the drop is faster than the checkpoints resolve (lambda {lam:.3g} < half the first gap, "
                f"{first_gap:g} steps): b is the level after it, lambda is a bound")
    elif log_lam >= grid[-1] - 1e-6:
        note = "no decay within the curve (lambda at the upper end of the search): b is an extrapolation"
    elif stderr[0] is None or stderr[0] > 0.5 * (float(m.max() - m.min()) or 1.0):
        note = f"the curve does not pin the asymptote down (b = {b:.3g} ± {stderr[0] or float('nan'):.2g})"
    return {"b": float(b), "b_stderr": stderr[0], "a": float(a), "a_stderr": stderr[1], "lam": lam,
            "lam_stderr": stderr[2], "rmse": math.sqrt(sse / len(t)), "note": note}


METRICS = {
    "injected_at": "steps at which the series trained on the special batch",
    "injection_epoch": "epoch of the first injection (ledger)",
    "repeats": "times the special batch was trained on (exposures)",
    "updates_per_exposure": "consecutive updates on the batch per exposure (lab `special.updates`)",
    "spacing": "epochs between repeats (None: consecutive)",
    "steps_since": "steps since the last injection, for each checkpoint of the curve",
    "M_curve": "M on the special batch at those checkpoints",
    "M_before": "M at the last checkpoint before the first injection",
    "M_after": "M at the first checkpoint at or after the last injection",
    "baseline_min": "forgetting baseline: minimum M after the last injection (t > 0)",
    "baseline_fit": "forgetting baseline: asymptote b of M(t) = b + a exp(-t / lambda)",
    "baseline_fit_stderr": "standard error of b",
    "half_life": "lambda * ln 2, in steps",
    "fit_rmse": "root mean square residual of the fit",
    "fit_note": "why there is no fit, or why to distrust it",
    "excess_curve": "M on the special batch minus M on the valid data set at the same checkpoints "
                    "(what the model keeps of the batch beyond what it generalizes to unseen text)",
    "baseline_excess": "minimum of the excess curve after the last injection (t > 0)",
    "excess_after": "the excess right after the last injection: how far the batch was memorized beyond held-out text",
}



def fig_forgetting(report):
    """Forgetting curves of the special batch against steps since injection: look for the fall to a floor
    (dashed: fitted baseline) that sits higher for larger models."""
    curves = [(s, d, r["steps_since"], r["M_curve"]) for s in report.series
              for d, r in s.results.get("forgetting", {}).items() if r.get("M_curve")]
    if not curves:
        return None
    plt = plots.pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for i, (label, s, d, steps, mean, sd) in enumerate(plots.grouped(report, curves)):  # seeds: mean ± sd band
        color = plots.PALETTE[i % len(plots.PALETTE)]
        plots.draw(ax, steps, mean, sd, color, marker="o", markersize=3,
                   label=f"{label} · {d} ({s.n_params and f'{s.n_params / 1e6:.2g}M' or '?'} params)")
        r = s.results["forgetting"][d]
        if sd is not None:
            ax.axhline(min(mean[1:] or mean), color=color, linestyle=":", linewidth=1)
        elif r.get("baseline_fit") is not None and not r.get("fit_note"):
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


@series_probe(metrics=METRICS, not_numbers=("injected_at", "steps_since", "M_curve", "excess_curve", "fit_note"),
              show=("injection_epoch", "repeats", "spacing", "M_before", "M_after", "excess_after", "baseline_min",
                    "baseline_fit", "baseline_fit_stderr", "half_life", "baseline_excess", "M_curve", "excess_curve",
                    "fit_note"),
              uses=("memorization",), figures=(fig_forgetting,))
def forgetting(checkpoints, datasets, ledger):
    """Forgetting curve and baseline of each `special` data set whose injection steps are known."""
    out = {}
    valid = next((d for d in datasets if d.role == "valid"), None)
    for d in datasets:
        if d.role != "special":
            continue
        injected, detail = _injections(d, ledger)
        if not injected:
            out[d.name] = {"fit_note": "injection steps unknown: give 'seen_at_step' in the yaml or use a lab ledger"}
            continue
        points = [(c.step, c.metric("memorization", d.name, "M")) for c in checkpoints]
        points = [(s, m) for s, m in points if s is not None and m is not None]
        last = max(injected)
        before = [m for s, m in points if s < min(injected)]
        curve = [(s - last, m) for s, m in points if s >= last]
        row = {"injected_at": injected, **detail, "steps_since": [t for t, _ in curve],
               "M_curve": [m for _, m in curve], "M_before": before[-1] if before else None,
               "M_after": curve[0][1] if curve else None}
        later = [m for t, m in curve if t > 0]
        row["baseline_min"] = min(later) if later else None
        fit = fit_exponential_decay([t for t, _ in curve], [m for _, m in curve])
        row.update({"baseline_fit": fit.get("b"), "baseline_fit_stderr": fit.get("b_stderr"),
                    "half_life": fit["lam"] * math.log(2) if fit.get("lam") else None,
                    "fit_rmse": fit.get("rmse"), "fit_note": fit["note"]})
        if valid is not None:
            level = {c.step: c.metric("memorization", valid.name, "M") for c in checkpoints}
            excess = [(t, m - level[t + last]) for t, m in curve if level.get(t + last) is not None]
            row["excess_curve"] = [e for _, e in excess]
            row["baseline_excess"] = min((e for t, e in excess if t > 0), default=None)
            row["excess_after"] = excess[0][1] if excess and excess[0][0] == 0 else None
        row["fit_note"] = row.pop("fit_note")  # last, it is the longest cell
        out[d.name] = row
    return out


def _injections(dataset, ledger) -> tuple[list[int], dict]:
    if dataset.seen_at_step:
        return sorted(dataset.seen_at_step), {"repeats": len(dataset.seen_at_step)}
    if ledger is None:
        return [], {}
    for intervention in ledger.interventions:
        if intervention.kind == "special_batch":
            d = intervention.detail
            return sorted(intervention.steps), {"injection_epoch": d.get("epoch"), "repeats": d.get("repeats"),
                                                "spacing": d.get("spacing"), "updates_per_exposure": d.get("updates", 1)}
    return [], {}
