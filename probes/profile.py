"""Memorization as a causal effect: memorization profiles from the training order (Lesci, Meister, Hofmann,
Vlachos and Pimentel, "Causal Estimation of Memorisation Profiles", ACL 2024).

Samples trained on at different steps are cohorts treated at different times; held-out samples are never
treated. From the per-sample panel Y[t, i] (an outcome of sample i at audited checkpoint t, e.g. its mean
log-likelihood), Callaway and Sant'Anna's difference-in-differences with never-treated controls and no
covariates estimates the effect of having trained on a sample on the model's prediction of it:

    ATT(g, t) = [mean Y of cohort g at t - at b] - [mean Y of never-treated at t - at b]

with base period b = g - 1 for t >= g (effects) and b = t - 1 for t < g (placebos, the pre-trend check: the
"varying" base period). Cohort g of a sample is the first audited checkpoint at or after its training step.
Aggregations by event time e = t - g (weighted by cohort size): instantaneous memorization e = 0, persistent
memorization e >= 1; residual memorization at the last checkpoint; per cohort; overall. Standard errors come
from per-sample influence functions; a seeded multiplier bootstrap gives simultaneous bands; a Wald test says
whether the placebo effects are jointly zero. Point estimates equal the `differences` package's ATTgt
(tests/test_profile.py).
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

import numpy as np
from pydantic import Field

from memaudit import plots, series_probe

OUTCOMES = {"loglik": ("memorization", "loss", -1.0), "M": ("memorization", "M", 1.0)}
"""outcome -> (probe, per-sample column, sign): loglik is the mean log-likelihood per token (= -loss)."""


def cohorts_of(train_steps: np.ndarray, checkpoint_steps: list[int]) -> np.ndarray:
    """The cohort of each sample: the index of the first checkpoint whose step is at or after the sample's
    training step (len(checkpoint_steps) when none is: trained after the last checkpoint; -1 for an unknown
    step, NaN in `train_steps`)."""
    steps = np.asarray(checkpoint_steps, dtype=np.float64)
    out = np.searchsorted(steps, np.nan_to_num(train_steps, nan=np.inf), side="left")
    return np.where(np.isnan(train_steps), -1, out)


def att_gt(y: np.ndarray, cohort: np.ndarray, treated: np.ndarray, control: np.ndarray):
    """Every ATT(g, t) with its influence function.

    y: (T, N) outcomes over checkpoints; cohort: (N,) cohort index of the treated samples; treated, control:
    (N,) masks (control: never treated). Returns a list of (g, t, base, att, influence) with influence (N,)
    per sample (zero outside cohort g and the controls), normalised so that var(att) = sum(influence^2) / N^2.
    """
    n = y.shape[1]
    n_c = int(control.sum())
    dy_c = None
    out = []
    for g in np.unique(cohort[treated]):
        members = treated & (cohort == g)
        n_g = int(members.sum())
        for t in range(y.shape[0]):
            base = g - 1 if t >= g else t - 1
            if base < 0 or base == t:
                continue
            dy = y[t] - y[base]  # (N,)
            dy_c = dy[control]
            mean_g, mean_c = float(dy[members].mean()), float(dy_c.mean())
            influence = np.zeros(n)
            influence[members] = n / n_g * (dy[members] - mean_g)
            influence[control] = -n / n_c * (dy_c - mean_c)
            out.append((int(g), t, base, mean_g - mean_c, influence))
    return out


def aggregate(estimates: list, cohort: np.ndarray, treated: np.ndarray, keep) -> tuple[float, np.ndarray] | None:
    """The cohort-size weighted mean of the ATT(g, t) that `keep(g, t)` selects (at most one per cohort), with
    its influence function, including the estimation of the weights; None when none is selected."""
    chosen = [(g, att, psi) for g, t, _, att, psi in estimates if keep(g, t)]
    if not chosen:
        return None
    sizes = np.array([float((treated & (cohort == g)).sum()) for g, _, _ in chosen])
    weights = sizes / sizes.sum()
    theta = float(sum(w * att for w, (_, att, _) in zip(weights, chosen)))
    n = len(cohort)
    share = sizes.sum() / n  # P(G in the selected cohorts)
    influence = sum(w * psi for w, (_, _, psi) in zip(weights, chosen))
    effect_of = np.zeros(n)  # the weights are estimated: (ATT of the sample's cohort - theta) / P(G in set)
    for g, att, _ in chosen:
        effect_of[treated & (cohort == g)] = (att - theta) / share
    return theta, influence + effect_of


def standard_error(influence: np.ndarray) -> float:
    """sqrt(sum(psi^2)) / N."""
    return float(np.sqrt((influence.astype(np.float64) ** 2).sum()) / len(influence))


def bootstrap_critical(influences: np.ndarray, seed: int, draws: int = 999, level: float = 0.95) -> float:
    """The multiplier bootstrap's critical value for simultaneous bands over the estimates whose influence
    functions are the columns of `influences` (N, K): the `level` quantile over Rademacher draws of
    max_k |mean_i v_i psi_ik| / se_k. Samples are taken in chunks, so memory stays flat in N."""
    n, k = influences.shape
    se = np.sqrt((influences ** 2).sum(axis=0)) / n  # (K,)
    if not np.all(se > 0):
        return float("nan")
    rng = np.random.default_rng(seed)
    z = np.zeros((draws, k))
    for start in range(0, n, 8192):
        chunk = influences[start:start + 8192]  # (chunk, K)
        v = rng.choice(np.array([-1.0, 1.0]), size=(draws, len(chunk)))  # (draws, chunk)
        z += v @ chunk
    return float(np.quantile(np.abs(z / n / se).max(axis=1), level))


def wald_pretrend(placebos: list) -> dict:
    """Joint test that the placebo ATT(g, t), t < g, are all zero: W = theta' V^-1 theta, chi-squared."""
    from scipy.stats import chi2

    if not placebos:
        return {"pretrend_wald": None, "pretrend_df": 0, "pretrend_p": None}
    theta = np.array([att for *_, att, _ in placebos])
    psi = np.stack([p for *_, p in placebos], axis=1)  # (N, K)
    n = psi.shape[0]
    cov = psi.T @ psi / n ** 2  # (K, K)
    wald = float(theta @ np.linalg.pinv(cov) @ theta)
    df = int(np.linalg.matrix_rank(cov))
    return {"pretrend_wald": wald, "pretrend_df": df, "pretrend_p": float(chi2.sf(wald, df)) if df else None}


def profile(y: np.ndarray, cohort: np.ndarray, treated: np.ndarray, control: np.ndarray, steps: list[int],
            seed: int = 0, level: float = 0.95, draws: int = 999) -> dict:
    """Every estimate of the memorization profile from a panel y (T, N): ATT(g, t) with standard errors,
    event-time effects with pointwise and simultaneous intervals, instantaneous / persistent / residual /
    per-cohort / overall memorization, and the pre-trend test."""
    from scipy.stats import norm

    z = float(norm.ppf(0.5 + level / 2))
    estimates = att_gt(y, cohort, treated, control)
    effects = [e for e in estimates if e[1] >= e[0]]
    placebos = [e for e in estimates if e[1] < e[0]]
    last = y.shape[0] - 1
    out: dict = {"checkpoint_steps": list(steps),
                 "cohort_steps": sorted({steps[g] for g, *_ in estimates}),
                 "att": [{"cohort_step": steps[g], "step": steps[t], "att": att, "se": standard_error(psi)}
                         for g, t, _, att, psi in estimates]}

    def summary(name: str, result) -> None:
        if result is None:
            out.update({name: None, f"{name}_se": None, f"{name}_lo": None, f"{name}_hi": None})
            return
        theta, psi = result
        se = standard_error(psi)
        out.update({name: theta, f"{name}_se": se, f"{name}_lo": theta - z * se, f"{name}_hi": theta + z * se})

    events = sorted({t - g for g, t, *_ in estimates})
    curve = [(e, aggregate(estimates, cohort, treated, lambda g, t, e=e: t - g == e)) for e in events]
    curve = [(e, r) for e, r in curve if r is not None]
    critical = bootstrap_critical(np.stack([psi for _, (_, psi) in curve], axis=1), seed, draws, level) \
        if curve else float("nan")
    out["event_time"] = [{"e": e, "att": theta, "se": standard_error(psi),
                          "lo": theta - z * standard_error(psi), "hi": theta + z * standard_error(psi),
                          "band_lo": theta - critical * standard_error(psi),
                          "band_hi": theta + critical * standard_error(psi)} for e, (theta, psi) in curve]
    out["band_critical"] = critical if math.isfinite(critical) else None
    summary("instantaneous", dict(curve).get(0))
    for e, result in curve:
        if e >= 1:
            summary(f"persistent[e={e}]", result)
    summary("residual", aggregate(estimates, cohort, treated, lambda g, t: t == last and g < last))
    summary("overall", _overall(effects, cohort, treated))
    out["per_cohort"] = {}
    for g in sorted({g for g, *_ in effects}):
        theta, psi = _mean_over_time([e for e in effects if e[0] == g])
        out["per_cohort"][str(steps[g])] = theta
    out.update(wald_pretrend(placebos))
    return out


def _mean_over_time(effects: list) -> tuple[float, np.ndarray]:
    """A cohort's ATT averaged over its post-treatment checkpoints, and the influence function of that mean."""
    return (float(np.mean([att for *_, att, _ in effects])), np.mean([psi for *_, psi in effects], axis=0))


def _overall(effects: list, cohort: np.ndarray, treated: np.ndarray):
    """Callaway and Sant'Anna's overall effect: the cohort-size weighted mean of each cohort's mean effect."""
    by_cohort = {}
    for e in effects:
        by_cohort.setdefault(e[0], []).append(e)
    collapsed = [(g, g, g - 1, *_mean_over_time(rows)) for g, rows in by_cohort.items()]
    return aggregate(collapsed, cohort, treated, lambda g, t: True)


def training_steps(panel, dataset: str, ledger) -> tuple[np.ndarray, int]:
    """Each sample's (first) training step, NaN where unknown: the data's `seen_at_step`, else the ledger's
    first update that trained on it. Also how many samples the ledger shows trained on more than once."""
    samples = panel.samples[dataset]
    if samples.steps is not None:
        return samples.steps.astype(np.float64), 0
    first: dict[str, int] = {}
    repeated = set()
    for update in (ledger.updates if ledger is not None else ()):
        if update.kind == "unlearn":
            continue
        for sid in update.sample_ids:
            if sid in first:
                repeated.add(sid)
            else:
                first[sid] = update.step
    steps = np.array([first.get(str(sid), np.nan) for sid in samples.ids], dtype=np.float64)
    return steps, sum(1 for sid in samples.ids if str(sid) in repeated)


CONTROL_ROLES = ("valid", "holdout")

PROFILE_METRICS = {
    "instantaneous": "memorization at the checkpoint right after training on a sample (event time 0): the effect "
                     "of having trained on it on its outcome, against never-trained samples (difference in "
                     "differences); _se, _lo, _hi: standard error and the interval at `level`",
    "persistent[e=<e>]": "the same effect e checkpoints after training (e >= 1): how much of it persists",
    "residual": "the effect at the last checkpoint on every cohort trained before it (cohort-size weighted)",
    "overall": "the cohort-size weighted mean over cohorts of each cohort's mean effect after its training",
    "per_cohort": "each cohort's mean effect after training, by the step of its first checkpoint",
    "event_time": "the effect by event time e = checkpoint - cohort (e < 0: placebos), with pointwise intervals "
                  "(lo, hi) and simultaneous bands (band_lo, band_hi, multiplier bootstrap)",
    "att": "every ATT(g, t): cohort g (the step of its first checkpoint after training) at checkpoint t, with its "
           "standard error",
    "pretrend_p": "p-value of the Wald test that every placebo effect (before training) is zero: small values "
                  "say the design's assumption (parallel trends) fails; pretrend_wald, pretrend_df beside it. The "
                  "test is asymptotic: with small cohorts (tens of samples) and many placebos it rejects too often "
                  "(~15% at 5% with cohorts of 40 and 10 placebos; ~5% with cohorts of 200)",
    "outcome": "the per-sample outcome: loglik (mean log-likelihood per token) or M",
    "n_treated": "samples in the estimate (a known training step with a checkpoint before and after it)",
    "n_control": "never-trained samples (data sets of role valid or holdout)",
    "n_unknown_step": "samples left out: no training step known", "n_no_base": "samples left out: trained "
                      "before the first audited checkpoint (no base period)",
    "n_after_last": "samples left out: trained after the last audited checkpoint",
    "n_repeated": "samples the ledger shows trained more than once (their first exposure counts)",
    "note": "why there is no estimate, when there is none",
}


def _validate(params: dict, config) -> None:
    from memaudit.errors import ConfigError

    roles = {d.role for d in config.datasets}
    if not roles & set(CONTROL_ROLES):
        raise ConfigError("memorization_profile compares trained samples with samples never trained on, but no data "
                          "set has role valid or holdout. Add held-out text of the same kind as a data set with "
                          "'role: valid' (or deselect the probe: -k 'not profile').")
    if "train" not in roles:
        raise ConfigError("memorization_profile estimates the effect of training on the samples of data sets with "
                          "role train (and their training steps), but none has it.")


def fig_profile(report):
    """The memorization profile: ATT(g, t) as a cohort x checkpoint heat map for the largest series (left;
    below the diagonal, placebos before training), and the effect by event time with its simultaneous band,
    a line per series (right): look for a jump at e = 0 that decays, and placebos at zero."""
    rows = [(s, d, r) for s in report.series for d, r in s.results.get("memorization_profile", {}).items()
            if r.get("event_time")]
    if not rows:
        return None
    plt = plots.pyplot()
    fig, (heat, curve) = plt.subplots(1, 2, figsize=(11, 4.2))
    s, d, r = max(rows, key=lambda row: row[0].n_params or 0)
    cohorts, steps = r["cohort_steps"], r["checkpoint_steps"]
    grid = np.full((len(cohorts), len(steps)), np.nan)  # (cohorts, checkpoints)
    for cell in r["att"]:
        if cell["att"] is not None:
            grid[cohorts.index(cell["cohort_step"]), steps.index(cell["step"])] = cell["att"]
    span = np.nanmax(np.abs(grid)) if np.isfinite(grid).any() else 1.0
    image = heat.imshow(grid, cmap="RdBu_r", vmin=-span, vmax=span, aspect="auto")
    heat.set_xticks(range(len(steps)), [str(x) for x in steps], rotation=90, fontsize=7)
    heat.set_yticks(range(len(cohorts)), [str(x) for x in cohorts], fontsize=7)
    heat.set_xlabel("checkpoint (step)")
    heat.set_ylabel("cohort (first checkpoint after training)")
    heat.set_title(f"ATT(g, t) · {s.name} · {d}", fontsize=10)
    heat.grid(False)
    fig.colorbar(image, ax=heat, label=f"effect on {r.get('outcome')}")
    for i, (s, d, r) in enumerate(rows):
        color = plots.PALETTE[i % len(plots.PALETTE)]
        points = [p for p in r["event_time"] if p["att"] is not None]
        es = [p["e"] for p in points]
        curve.plot(es, [p["att"] for p in points], marker="o", markersize=3, color=color, label=f"{s.name} · {d}")
        if all(p["band_lo"] is not None for p in points):
            curve.fill_between(es, [p["band_lo"] for p in points], [p["band_hi"] for p in points], color=color,
                               alpha=0.18, linewidth=0)
    curve.axhline(0, color="grey", linewidth=0.8)
    curve.axvline(-0.5, color="grey", linewidth=0.8, linestyle=":")
    from matplotlib.ticker import MaxNLocator

    curve.xaxis.set_major_locator(MaxNLocator(integer=True))
    curve.set_xlabel("event time e (checkpoints after training)")
    curve.set_ylabel(f"effect on {rows[0][2].get('outcome')}")
    curve.set_title("Memorization profile (band: simultaneous)", fontsize=10)
    curve.legend(fontsize=8)
    fig.tight_layout()
    return fig


@series_probe(metrics=PROFILE_METRICS, uses=("memorization",), figures=(fig_profile,), validate=_validate, opt_in=True,
              show=("instantaneous", "instantaneous_lo", "instantaneous_hi", "persistent[e=1]", "residual",
                    "residual_lo", "residual_hi", "overall", "pretrend_p", "n_treated", "n_control", "note"),
              names=lambda params, params_of: _names())
def memorization_profile(panel, datasets, ledger, outcome: Literal["loglik", "M"] = "loglik",
                         cohort_every: Annotated[int, Field(ge=1)] = 1,
                         level: Annotated[float, Field(gt=0, lt=1)] = 0.95,
                         draws: Annotated[int, Field(ge=99, le=100_000)] = 999, seed: int = 0):
    """Memorization as a causal effect (Lesci et al. 2024): difference in differences over the per-sample panel,
    trained samples as cohorts by training step, held-out samples as never-treated controls. Runs when the
    yaml's `probes:` names it (`memorization_profile: {outcome: loglik}`)."""
    if panel is None:
        return {}
    probe, column, sign = OUTCOMES[outcome]
    controls = [d.name for d in datasets if d.role in CONTROL_ROLES and panel.has(probe, column, d.name)]
    out = {}
    for d in (d for d in datasets if d.role == "train" and panel.has(probe, column, d.name)):
        out[d.name] = _profile_of(panel, d.name, controls, ledger, probe, column, sign, outcome, cohort_every,
                                  level, draws, seed)
    return out


def _names() -> list[str]:
    fixed = [m for m in PROFILE_METRICS if "<" not in m]
    return [f"{m}{suffix}" for m in fixed for suffix in ("", "_se", "_lo", "_hi")] + \
        [f"persistent[e={e}]{suffix}" for e in range(1, 201) for suffix in ("", "_se", "_lo", "_hi")]


def _profile_of(panel, dataset: str, controls: list[str], ledger, probe: str, column: str, sign: float,
                outcome: str, cohort_every: int, level: float, draws: int, seed: int) -> dict:
    """The profile of one trained data set against every never-trained sample."""
    steps = panel.steps
    train_steps, repeated = training_steps(panel, dataset, ledger)
    cohort = cohorts_of(train_steps, steps)
    if cohort_every > 1:  # macro-cohorts: the first checkpoint of each block of cohort_every
        cohort = np.where(cohort > 0, -(-cohort // cohort_every) * cohort_every, cohort)
    counts = {"outcome": outcome, "n_unknown_step": int((cohort < 0).sum()), "n_no_base": int((cohort == 0).sum()),
              "n_after_last": int((cohort >= len(steps)).sum()), "n_repeated": repeated}
    usable = (cohort >= 1) & (cohort < len(steps))
    y = np.concatenate([sign * panel.values(probe, column, dataset)[:, usable]]
                       + [sign * panel.values(probe, column, c) for c in controls], axis=1)  # (checkpoints, samples)
    n_control = y.shape[1] - int(usable.sum())
    treated = np.arange(y.shape[1]) < usable.sum()
    cohorts = np.concatenate([cohort[usable], np.full(n_control, -1)])
    counts.update(n_treated=int(usable.sum()), n_control=n_control)
    if len(steps) < 2 or None in steps:
        return {**counts, "note": "a profile needs at least 2 checkpoints with training steps"}
    if not usable.any() or not n_control:
        why = "no never-trained samples" if not n_control else "no trained sample has a checkpoint before and after its training step"
        return {**counts, "note": why}
    return {**counts, **profile(y, cohorts, treated, ~treated, steps, seed=seed, level=level, draws=draws)}
