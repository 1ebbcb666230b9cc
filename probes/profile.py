"""Memorization as a causal effect: memorization profiles from the training order (Lesci, Meister, Hofmann,
Vlachos and Pimentel, "Causal Estimation of Memorisation Profiles", ACL 2024).

Samples trained on at different steps are cohorts treated at different times; held-out samples are never
treated. From the per-sample panel Y[t, i] (an outcome of sample i at audited checkpoint t, e.g. its mean
log-likelihood), Callaway and Sant'Anna's difference-in-differences with no covariates estimates the effect of
having trained on a sample on the model's prediction of it:

    ATT(g, t) = [mean Y of cohort g at t - at b] - [mean Y of the controls at t - at b]

with base period b = g - 1 for t >= g (effects) and, for the placebos t < g (the pre-trend check), b = t - 1
(`varying`) or g - 1 (`universal`); controls the never-treated, or also the cohorts not yet treated. Cohort g of a
sample is the first audited checkpoint at or after its training step (or a macro-cohort). Aggregations: by
event time e = t - g (weighted by cohort size; instantaneous memorization e = 0, persistent e >= 1), by
calendar time, by cohort, overall, and the residual at one checkpoint. Standard errors come from influence
functions; a seeded multiplier bootstrap gives bootstrap standard errors and simultaneous bands, over every
ATT(g, t) and over the event-time curve; Wald and sup-t tests say whether the placebos are jointly zero. The
estimator itself (from each group's moments, so that it scales to Pythia's design) is probes/_did.py; every
estimate and analytic standard error equals the `differences` package's (tests/test_profile.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Literal

import numpy as np
from pydantic import ConfigDict, Field, with_config
from typing_extensions import TypedDict  # pydantic reads typing.TypedDict only from Python 3.12 on

from memaudit import Column, plots, probe, series_probe
from memaudit.probes import _did as did

OUTCOMES = {"loglik": ("memorization", "loss", -1.0), "loglik_suffix": ("memorization", "suffix_loss", -1.0),
            "M": ("memorization", "M", 1.0), "rank": ("sample_outcomes", "mean_rank", 1.0),
            "entropy": ("sample_outcomes", "mean_entropy", 1.0)}
"""outcome -> (probe, per-sample column, sign): loglik is the mean log-likelihood per token (= -loss) of the
whole sample, loglik_suffix of the m tokens after memorization's k-token prefix, M the share of argmax hits,
rank the mean rank of the true tokens and entropy the mean entropy of the next-token distributions (for
these two, memorization shows as a negative effect: training lowers them)."""


def outcome_rows(ranks, entropy) -> dict[str, np.ndarray]:
    """Per sample: the mean rank of its true tokens (1 = argmax) and the mean entropy (nats) of the model's
    next-token distributions."""
    return {"mean_rank": ranks.astype(np.float64).mean(axis=1), "mean_entropy": entropy.astype(np.float64).mean(axis=1)}


@probe(metrics={"mean_rank": "mean over samples of each sample's mean true-token rank (1 = argmax)",
                "mean_entropy": "mean over samples of each sample's mean next-token entropy (nats)"},
       show=("mean_rank", "mean_entropy"), rows=outcome_rows, opt_in=True,
       columns={"mean_rank": Column("float64", "mean rank of the sample's true tokens (1 = the argmax)", unit="rank",
                                    higher="less memorized"),
                "mean_entropy": Column("float64", "mean entropy of the next-token distributions", unit="nats",
                                       higher="less certain")})
def sample_outcomes(rows):
    """Per-sample mean rank and entropy (the profile's rank and entropy outcomes; --samples-out writes them).
    Runs when the yaml names it, or memorization_profile with outcome rank or entropy does."""
    return {name: float(values.mean()) for name, values in rows.items()}


def cohorts_of(train_steps: np.ndarray, checkpoint_steps: list[int]) -> np.ndarray:
    """The cohort of each sample: the index of the first checkpoint whose step is at or after the sample's
    training step (len(checkpoint_steps) when none is: trained after the last checkpoint; -1 for an unknown
    step, NaN in `train_steps`)."""
    steps = np.asarray(checkpoint_steps, dtype=np.float64)
    out = np.searchsorted(steps, np.nan_to_num(train_steps, nan=np.inf), side="left")
    return np.where(np.isnan(train_steps), -1, out)


def profile(y: np.ndarray, cohort: np.ndarray, treated: np.ndarray, control: np.ndarray, steps: list[int],
            seed: int = 0, level: float = 0.95, draws: int = 999, base: dict | None = None,
            residual_at: int | None = None, base_period: str = "varying", control_group: str = "never_treated") -> dict:
    """Every estimate of the memorization profile from a panel y (T, N): each ATT(g, t) with analytic and
    bootstrap standard errors, a simultaneous band over all of them and a flag where it excludes zero; the
    aggregations by event time (with its own simultaneous band), calendar time, cohort and overall;
    instantaneous / persistent / residual memorization; the pre-trend tests. `base`: cohort -> its base period,
    for macro-cohorts (default g - 1); `residual_at`: the checkpoint index the residual effect is read at
    (default the last)."""
    from scipy.stats import norm

    z = float(norm.ppf(0.5 + level / 2))
    groups, yc = did.moments(y, cohort, treated, control, base)
    c = did.cells(groups, base_period, control_group)
    boot = did.bootstrap_sums(groups, yc, draws, seed)
    del yc
    last = y.shape[0] - 1 if residual_at is None else residual_at
    out: dict = {"checkpoint_steps": list(steps), "base_period": base_period, "control_group": control_group,
                 "cohort_steps": sorted({steps[g] for g in c.g.tolist()})}
    out.update(_cells_out(c, groups, boot, steps, level, z))

    events = sorted(set((c.t - c.g).tolist()))
    curve = _family(c, groups, boot, did.by_cohort_size(c, groups, [np.flatnonzero(c.t - c.g == e) for e in events]))
    critical, note = _critical(curve["draws"], np.array(curve["se"]), level, z)
    out["event_time"] = [{"e": e, **_pointwise(theta, se, z), "band_lo": theta - critical * se,
                          "band_hi": theta + critical * se} for e, theta, se in zip(events, curve["theta"], curve["se"])]
    out["band_critical"] = critical
    if note:
        out["band_note"] = note
    by_e = {e: (curve["theta"][i], curve["se"][i]) for i, e in enumerate(events)}
    out.update(_event_pretrend(groups, curve, events))
    out.update(_interval("instantaneous", by_e.get(0), z))
    for e in events:
        if e >= 1:
            out.update(_interval(f"persistent[e={e}]", by_e[e], z))
    residual = np.flatnonzero((c.t == last) & (c.g < last))
    out.update(_interval("residual", _single(c, groups, did.by_cohort_size(c, groups, [residual]))
                         if len(residual) else None, z))
    out.update(_interval("overall", _single(c, groups, did.overall(c, groups)) if c.post.any() else None, z))

    cohorts = sorted({int(p) for p in c.group[c.post]})
    means = _family(c, groups, None, did.cohort_means(c, groups, cohorts))
    out["per_cohort"] = {str(steps[groups.cohort[p]]): float(v) for p, v in zip(cohorts, means["theta"])}
    out["cohorts"] = [{"cohort_step": steps[groups.cohort[p]], **_pointwise(theta, se, z)}
                      for p, theta, se in zip(cohorts, means["theta"], means["se"])]
    times = sorted({int(t) for t in c.t[c.post]})
    by_time = _family(c, groups, None, did.by_cohort_size(c, groups, [np.flatnonzero(c.post & (c.t == t))
                                                                      for t in times]))
    out["times"] = [{"step": steps[t], **_pointwise(theta, se, z)}
                    for t, theta, se in zip(times, by_time["theta"], by_time["se"])]
    out.update(did.wald(c, groups))
    return out


def _cells_out(c, groups, boot, steps: list, level: float, z: float) -> dict:
    """Every ATT(g, t) with its bootstrap standard error, the simultaneous band over all of them and whether it
    excludes zero; and the sup-t pre-trend test: how often the bootstrap's largest standardized placebo is at least
    the observed one."""
    draws = did.cell_draws(boot, groups, c)  # (cells, draws)
    boot_se = did.bootstrap_se(draws)
    critical, note = _critical(draws.T, boot_se, level, z)
    lo, hi = c.att - critical * boot_se, c.att + critical * boot_se
    reference = c.t == c.b
    out = {"att": [{"cohort_step": steps[g], "step": steps[t], "base_step": steps[b], "att": att, "se": se,
                    "boot_se": bse, "band_lo": low, "band_hi": high, "significant": bool(low > 0 or high < 0)
                    and not ref} for g, t, b, att, se, bse, low, high, ref in
                   zip(c.g.tolist(), c.t.tolist(), c.b.tolist(), c.att.tolist(), c.se.tolist(), boot_se.tolist(),
                       lo.tolist(), hi.tolist(), reference.tolist())],
           "att_band_critical": critical, "n_significant": int(((lo > 0) | (hi < 0))[~reference].sum())}
    if note:
        out["att_band_note"] = note
    placebo = c.placebo & (boot_se > did.ZERO_SE)
    if placebo.any():
        # the observed t statistics on the normal scale of the bootstrap draws, through Student's t with Welch's
        # degrees of freedom: with cohorts of ~100 and thousands of placebos, the sup lies where t's tails are
        # heavier than the normal's, and the uncorrected test rejected 17.5% of null panels at 5% (7.5% with it)
        from scipy.stats import norm, t as student

        observed = norm.isf(student.sf(np.abs(c.att[placebo] / boot_se[placebo]), c.welch_df[placebo])).max()
        sup = np.abs(draws[placebo] / boot_se[placebo][:, None]).max(axis=0)  # (draws,)
        out["pretrend_sup_p"] = float((sup >= observed).mean())
    else:
        out["pretrend_sup_p"] = None
    return out


def _family(c, groups, boot, fam) -> dict:
    """A family of aggregates: estimates, analytic standard errors, (with `boot`) bootstrap draws, and the
    influence functions' coefficients."""
    coef, const = did.coefficients(c, groups, fam)
    return {"theta": fam.theta.tolist(), "se": did.standard_errors(groups, coef, const).tolist(),
            "draws": did.family_draws(boot, groups, coef, const) if boot is not None else None, "coef": coef,
            "const": const}


def _event_pretrend(groups, curve: dict, events: list[int]) -> dict:
    """The Wald test that the event-time placebos (e < 0, each pooling every cohort) are jointly zero: valid with
    cohorts of any size, since each aggregate rests on all the samples."""
    pre = [i for i, e in enumerate(events) if e < 0]
    if not pre:
        return {"pretrend_event_p": None, "pretrend_event_df": 0}
    cov = did.covariance(groups, curve["coef"][..., pre], curve["const"][:, pre])
    test = did.wald_of(np.array(curve["theta"])[pre], cov)
    if test is None:
        return {"pretrend_event_p": None, "pretrend_event_df": len(pre),
                "pretrend_event_note": "the event-time placebos' covariance is singular"}
    return {"pretrend_event_p": test["p"], "pretrend_event_wald": test["wald"], "pretrend_event_df": test["df"]}


def _single(c, groups, fam) -> tuple[float, float]:
    one = _family(c, groups, None, fam)
    return one["theta"][0], one["se"][0]


def _pointwise(theta: float, se: float, z: float) -> dict:
    """An estimate with its standard error and pointwise interval: att, se, lo, hi."""
    return {"att": theta, "se": se, "lo": theta - z * se, "hi": theta + z * se}


def _interval(name: str, estimate: tuple[float, float] | None, z: float) -> dict:
    """`name`, `name_se`, `name_lo`, `name_hi` (None without an estimate)."""
    row = _pointwise(*estimate, z) if estimate is not None else dict.fromkeys(("att", "se", "lo", "hi"))
    return {name: row["att"], f"{name}_se": row["se"], f"{name}_lo": row["lo"], f"{name}_hi": row["hi"]}


def _critical(draws: np.ndarray, se: np.ndarray, level: float, z: float) -> tuple[float, str | None]:
    """The simultaneous band's critical value over estimates (draws: (draws, K)), never below the pointwise one:
    when it would be (or there is no bootstrap standard error), the band is the pointwise interval, and says so."""
    critical = did.sup_critical(draws, se, level)
    if not math.isfinite(critical):
        return z, "no estimate has a bootstrap standard error: the band is the pointwise interval"
    if critical < z:
        return z, (f"the simultaneous critical value ({critical:.3f}) was below the pointwise one ({z:.3f}): the "
                   "band is the pointwise interval")
    return critical, None


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
    "residual": "the effect at `residual_at` (default the last checkpoint of the window) on every cohort trained "
                "before it (cohort-size weighted)",
    "residual_at": "the step the residual effect is read at",
    "window": "the `steps` parameter: the checkpoints (and so the training steps) the profile looks at",
    "overall": "the cohort-size weighted mean over cohorts of each cohort's mean effect after its training",
    "per_cohort": "each cohort's mean effect after training, by the step of its first checkpoint",
    "cohorts": "the cohort aggregation: each cohort's mean effect after training, with its standard error and "
               "pointwise interval",
    "times": "the calendar-time aggregation: at each checkpoint, the cohort-size weighted effect on every cohort "
             "trained by then, with its standard error and pointwise interval",
    "event_time": "the effect by event time e = checkpoint - cohort (e < 0: placebos), with pointwise intervals "
                  "(lo, hi) and simultaneous bands (band_lo, band_hi, multiplier bootstrap)",
    "band_critical": "the event-time band's critical value (never below the pointwise one; band_note says when it "
                     "fell back to it)",
    "att": "every ATT(g, t): cohort g (the step of its first checkpoint after training) at checkpoint t against base "
           "period base_step, with its analytic (se) and bootstrap (boot_se) standard errors, the simultaneous band "
           "over all cells (band_lo, band_hi) and whether it excludes zero (significant)",
    "att_band_critical": "the critical value of the band over every ATT(g, t) (sup-t, multiplier bootstrap; never "
                         "below the pointwise one: att_band_note says when it fell back to it)",
    "n_significant": "ATT(g, t) whose simultaneous band excludes zero (reference cells not counted)",
    "base_period": "varying (placebos against the period before) or universal (everything against the cohort's "
                   "base period)",
    "control_group": "never_treated, or not_yet_treated (also the cohorts not trained yet at max(t, base period))",
    "heatmap": "the figure's heat map: all cells, or only those whose simultaneous band excludes zero",
    "att_correlation": "per other series of the run audited on the same panel: the Pearson correlation of the "
                       "effects after training, ATT(g, t) for t >= g, with this series' (Lesci et al.'s finding iii), "
                       "and the number of cells; or a note why not",
    "pretrend_p": "p-value of the Wald test that every placebo effect (before training) is zero: small values "
                  "say the design's assumption (parallel trends) fails; pretrend_wald, pretrend_df beside it. Its "
                  "covariance is estimated from each cohort's members, so it drifts above the chi-squared when "
                  "cohorts are small against their placebos: None, with pretrend_note, when that drift exceeds "
                  "one standard deviation (or the covariance is singular), a warning from a quarter of one",
    "pretrend_event_p": "p-value of the Wald test that the event-time placebos (e < 0, each pooling every cohort) "
                        "are jointly zero (pretrend_event_wald, pretrend_event_df beside it): valid whatever the "
                        "cohorts' sizes, the test to read when cohorts are small against their placebos",
    "pretrend_event_note": "why there is no event-time pre-trend test, when there is none",
    "pretrend_sup_p": "p-value of the sup-t test that every placebo effect is zero: the share of bootstrap draws whose "
                      "largest standardized placebo is at least the observed one (valid with any number of "
                      "placebos; the test the simultaneous band implies)",
    "outcome": "the per-sample outcome: loglik (mean log-likelihood per token), loglik_suffix (of the m tokens "
               "after memorization's k-token prefix), M, rank or entropy (mean true-token rank, mean entropy: "
               "sample_outcomes must run, named in the yaml's probes)",
    "n_treated": "samples in the estimate (a known training step with a checkpoint before and after it)",
    "n_control": "never-trained samples (data sets of role valid or holdout)",
    "n_unknown_step": "samples left out: no training step known", "n_no_base": "samples left out: trained "
                      "before the first audited checkpoint (no base period)",
    "n_after_last": "samples left out: trained after the last checkpoint of the profile (of the window, with steps)",
    "n_repeated": "samples the ledger shows trained more than once (their first exposure counts)",
    "n_control_trained": "samples of the held-out data sets left out of the controls: their records give a "
                         "training step (seen_at_step), so they are no never-trained samples",
    "note": "why there is no estimate, when there is none",
    "pretrend_note": "why there is no Wald statistic, when there is none",
    "band_note": "when the event-time band fell back to the pointwise interval, why",
    "att_band_note": "when the band over every ATT(g, t) fell back to the pointwise interval, why",
}


def _validate(params: dict, config) -> None:
    from memaudit.errors import ConfigError

    needed = OUTCOMES[params["outcome"]][0]
    if needed != "memorization" and needed not in config.probes:
        raise ConfigError(f"memorization_profile with outcome '{params['outcome']}' reads the per-sample values of "
                          f"the probe '{needed}', which runs only when named: add '{needed}: {{}}' under 'probes:' in "
                          "the yaml.")

    if params.get("cohort_steps") is not None and params.get("cohort_every", 1) != 1:
        raise ConfigError("memorization_profile: give cohort_steps (cohorts of training steps, as Lesci et al.) or "
                          "cohort_every (cohorts of checkpoint intervals), not both.")
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
    masked = r.get("heatmap") == "significant"
    for cell in r["att"]:
        if cell["att"] is not None and (cell.get("significant") or not masked):
            grid[cohorts.index(cell["cohort_step"]), steps.index(cell["step"])] = cell["att"]
    span = np.nanmax(np.abs(grid)) if np.isfinite(grid).any() else 1.0
    image = heat.imshow(grid, cmap="RdBu_r", vmin=-span, vmax=span, aspect="auto")
    heat.set_xticks(range(len(steps)), [str(x) for x in steps], rotation=90, fontsize=7)
    heat.set_yticks(range(len(cohorts)), [str(x) for x in cohorts], fontsize=7)
    heat.set_xlabel("checkpoint (step)")
    heat.set_ylabel("cohort (first checkpoint after training)")
    heat.set_title(f"ATT(g, t) · {s.name} · {d}" + (" · band excludes 0" if masked else ""), fontsize=10)
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


@with_config(ConfigDict(extra="forbid"))
class StepWindow(TypedDict, total=False):
    """`steps: {min: ..., max: ...}`: the training steps a profile looks at (both ends included)."""

    min: Annotated[int, Field(ge=0)]
    max: Annotated[int, Field(ge=0)]


@series_probe(metrics=PROFILE_METRICS, uses=("memorization", "sample_outcomes"), figures=(fig_profile,),
              validate=_validate, opt_in=True,
              not_numbers=("per_cohort", "cohorts", "times", "event_time", "att", "outcome", "note", "window",
                           "base_period", "control_group", "heatmap", "att_correlation", "band_note",
                           "att_band_note", "pretrend_note", "pretrend_event_note"),
              show=("instantaneous", "instantaneous_lo", "instantaneous_hi", "persistent[e=1]", "residual",
                    "residual_lo", "residual_hi", "overall", "pretrend_event_p", "pretrend_p", "n_significant",
                    "n_treated", "n_control", "note"),
              names=lambda params, params_of: _names())
def memorization_profile(panel, panels, ledgers, series, datasets, ledger,
                         outcome: Literal["loglik", "loglik_suffix", "M", "rank", "entropy"] = "loglik",
                         cohort_every: Annotated[int, Field(ge=1)] = 1,
                         cohort_steps: Annotated[int, Field(ge=1)] | None = None,
                         steps: StepWindow | list[Annotated[int, Field(ge=0)]] | None = None,
                         residual_at: Annotated[int, Field(ge=0)] | None = None,
                         base_period: Literal["varying", "universal"] = "varying",
                         control_group: Literal["never_treated", "not_yet_treated"] = "never_treated",
                         heatmap: Literal["all", "significant"] = "all",
                         level: Annotated[float, Field(gt=0, lt=1)] = 0.95,
                         draws: Annotated[int, Field(ge=99, le=100_000)] = 999, seed: int = 0):
    """Memorization as a causal effect (Lesci et al. 2024): difference in differences over the per-sample panel,
    trained samples as cohorts by training step, held-out samples as never-treated controls. `cohort_every: N`
    joins the cohorts of N consecutive checkpoint intervals into one, measured from the checkpoint before its
    first member trained. `steps` limits the panel to the checkpoints in a window (`{max: 95000}`: Pythia's first
    epoch) or a list of steps, and so the cohorts to samples trained within it; `residual_at` is the step the
    residual effect is read at (default: the window's last checkpoint). `base_period` and `control_group` are the
    estimator's options as `did` and `differences` name them; `heatmap: significant` draws only the cells whose
    simultaneous band excludes zero. Runs when the yaml's `probes:` names it (`memorization_profile: {outcome:
    loglik}`)."""
    if panel is None:
        return {}
    probe, column, sign = OUTCOMES[outcome]
    controls = [d.name for d in datasets if d.role in CONTROL_ROLES and panel.has(probe, column, d.name)]
    others = {name: (other, (ledgers or {}).get(name)) for name, other in (panels or {}).items()
              if name != series.name and other is not None}
    out = {}
    for d in (d for d in datasets if d.role == "train"):
        if not panel.has(probe, column, d.name):
            out[d.name] = {"outcome": outcome, "note": f"no per-sample {probe}.{column} on this data set, so no "
                           f"'{outcome}' outcome" + (": its samples are shorter than memorization's k + m tokens (or "
                                                     "the model is not causal)" if column == "suffix_loss" else "")}
            continue
        out[d.name] = _profile_of(panel, d.name, controls, ledger, probe, column, sign, outcome, cohort_every,
                                  level, draws, seed, steps, residual_at, cohort_steps, base_period, control_group,
                                  others)
        out[d.name]["heatmap"] = heatmap
    return out


WITH_INTERVALS = ("instantaneous", "residual", "overall")
"""The effects reported with a standard error and an interval (`_se`, `_lo`, `_hi`), as `persistent[e=<e>]` is."""


def _names() -> list[str]:
    fixed = [m for m in PROFILE_METRICS if "<" not in m]
    intervals = [f"{m}{suffix}" for m in WITH_INTERVALS for suffix in ("_se", "_lo", "_hi")]
    return fixed + intervals + [f"persistent[e={e}]{suffix}" for e in range(1, 201) for suffix in ("", "_se", "_lo", "_hi")]


def in_window(steps: list, window) -> list[int]:
    """Indices of the checkpoint steps a `steps` parameter keeps: all (None), those in a list, or those between a
    window's `min` and `max` (both included)."""
    if window is None:
        return list(range(len(steps)))
    if isinstance(window, list):
        listed = set(window)
        return [t for t, s in enumerate(steps) if s in listed]
    low, high = window.get("min", 0), window.get("max")
    return [t for t, s in enumerate(steps) if s is not None and s >= low and (high is None or s <= high)]


@dataclass
class _Design:
    """Who is in the profile of one trained data set: the panel rows (checkpoints) in the window and their steps,
    the trained samples kept (`usable`) with their cohorts and base periods, the held-out samples kept (`never`,
    per control data set), and the counts of what was left out."""

    rows: list[int]
    steps: list[int]
    usable: np.ndarray  # (samples of the data set,)
    never: list[np.ndarray]  # per control data set: (its samples,)
    cohorts: np.ndarray  # (kept samples,) trained first, then controls (-1)
    base: dict
    counts: dict

    @property
    def treated(self) -> np.ndarray:
        return self.cohorts >= 0


def _design(panel, dataset: str, controls: list[str], ledger, said: dict, window, cohort_steps: int | None,
            cohort_every: int) -> _Design | dict:
    """The design of a profile, or a dict with the note saying why there is none."""
    rows = in_window(panel.steps, window)
    steps = [panel.steps[t] for t in rows]
    if len(steps) < 2 or None in steps:
        where = " in the window (steps)" if window is not None else ""
        return {**said, "note": f"a profile needs at least 2 checkpoints with training steps{where}; "
                                f"the panel's steps: {panel.steps}"}
    train_steps, repeated = training_steps(panel, dataset, ledger)
    if cohort_steps is not None:
        cohort, base = step_cohorts(train_steps, steps, cohort_steps)
    else:
        cohort = cohorts_of(train_steps, steps)
    counts = {**said, "n_unknown_step": int((cohort < 0).sum()), "n_no_base": int((cohort == 0).sum()),
              "n_after_last": int((cohort >= len(steps)).sum()), "n_repeated": repeated}
    usable = (cohort >= 1) & (cohort < len(steps))
    if cohort_steps is None:
        cohort, base = macro_cohorts(cohort, cohort_every, len(steps))
    never = [~np.isfinite(training_steps(panel, c, None)[0]) for c in controls]  # held out: no training step
    n_control = int(sum(keep.sum() for keep in never))
    counts.update(n_treated=int(usable.sum()), n_control=n_control,
                  n_control_trained=int(sum((~keep).sum() for keep in never)))
    if not usable.any() or not n_control:
        why = ("no never-trained samples" if not n_control else
               "no trained sample has a checkpoint before and after its training step")
        return {**counts, "note": why}
    return _Design(rows, steps, usable, never, np.concatenate([cohort[usable], np.full(n_control, -1)]), base, counts)


def _outcome(panel, design: _Design, dataset: str, controls: list[str], probe: str, column: str,
             sign: float) -> np.ndarray:
    """The panel of the design's samples: (checkpoints in the window, trained then control samples)."""
    return np.concatenate([sign * panel.values(probe, column, dataset)[design.rows][:, design.usable]]
                          + [sign * panel.values(probe, column, c)[design.rows][:, keep]
                             for c, keep in zip(controls, design.never)], axis=1)


def _profile_of(panel, dataset: str, controls: list[str], ledger, probe: str, column: str, sign: float,
                outcome: str, cohort_every: int, level: float, draws: int, seed: int, window=None,
                residual_at: int | None = None, cohort_steps: int | None = None, base_period: str = "varying",
                control_group: str = "never_treated", others: dict | None = None) -> dict:
    """The profile of one trained data set against every never-trained sample, over the checkpoints in `window`;
    with `others` (series name -> (panel, ledger)), the correlation of its ATT(g, t) with theirs."""
    said = {"outcome": outcome, **({"window": window} if window is not None else {}),
            "base_period": base_period, "control_group": control_group}
    design = _design(panel, dataset, controls, ledger, said, window, cohort_steps, cohort_every)
    if isinstance(design, dict):
        return design
    steps = design.steps
    if residual_at is not None and residual_at not in steps:
        return {**said, "note": f"residual_at: {residual_at} is no checkpoint step of the profile; its steps: {steps}"}
    y = _outcome(panel, design, dataset, controls, probe, column, sign)
    at = steps.index(residual_at) if residual_at is not None else len(steps) - 1
    out = {**design.counts, "residual_at": steps[at],
           **profile(y, design.cohorts, design.treated, ~design.treated, steps, seed=seed, level=level, draws=draws,
                     base=design.base, residual_at=at, base_period=base_period, control_group=control_group)}
    if others:
        mine = np.array([cell["att"] for cell in out["att"]])  # (cells,) in the design's order
        post = np.array([cell["step"] >= cell["cohort_step"] for cell in out["att"]])

        def correlation(other_panel, other_ledger) -> dict:
            """Lesci et al.'s finding (iii): the Pearson correlation of the effects after training, ATT(g, t) for
            t >= g, with another series audited on the same panel (the same samples, training steps and checkpoint
            steps), its cells estimated on this design."""
            if any(not other_panel.has(probe, column, d) for d in (dataset, *controls)):
                return {"note": f"no per-sample {probe}.{column} on the same data sets"}
            if any(list(other_panel.samples[d].ids) != list(panel.samples[d].ids) for d in (dataset, *controls)):
                return {"note": "not the same samples"}
            other = _design(other_panel, dataset, controls, other_ledger, said, window, cohort_steps, cohort_every)
            if isinstance(other, dict) or other.steps != steps or not np.array_equal(other.cohorts, design.cohorts) \
                    or not np.array_equal(other.usable, design.usable) or other.base != design.base:
                return {"note": "not the same design: its checkpoint steps or the samples' training steps differ"}
            y_other = _outcome(other_panel, other, dataset, controls, probe, column, sign)
            groups = did.moments(y_other, other.cohorts, other.treated, ~other.treated, other.base)[0]
            theirs = did.cells(groups, base_period, control_group).att
            if post.sum() < 3:
                return {"note": "fewer than 3 effects after training to correlate", "n_cells": int(post.sum())}
            return {"pearson": float(np.corrcoef(mine[post], theirs[post])[0, 1]), "n_cells": int(post.sum())}

        out["att_correlation"] = {name: correlation(*other) for name, other in others.items()}
    return out


def step_cohorts(train_steps: np.ndarray, checkpoint_steps: list[int], size: int) -> tuple[np.ndarray, dict[int, int]]:
    """Upstream's macro-cohorts (Lesci et al.'s compute_attgt.py): a sample trained at step s is in cohort
    c = ceil(s / size) * size, the first multiple of `size` at or after s; the cohort is treated at the first
    checkpoint at or after c, with its base period the last checkpoint at or before c - size (before any of its
    members could have trained; when two cohorts share a treatment checkpoint, the earlier base). Returns (each
    sample's cohort as a checkpoint index: -1 an unknown step, 0 no checkpoint before the cohort,
    len(checkpoint_steps) none at or after it; cohort -> base period)."""
    steps = np.asarray(checkpoint_steps, dtype=np.float64)
    known = np.isfinite(train_steps)
    start = np.ceil(np.where(known, train_steps, 0.0) / size) * size  # (samples,) the cohort's last step
    g = np.searchsorted(steps, start, side="left")  # first checkpoint at or after it
    b = np.searchsorted(steps, start - size, side="right") - 1  # last checkpoint before its first step
    cohort = np.where(~known, -1, np.where(b < 0, 0, g))
    usable = (cohort >= 1) & (cohort < len(steps))
    base: dict[int, int] = {}
    for gi, bi in zip(*np.unique(np.stack([g[usable], b[usable]]), axis=1)):  # one pair per cohort, not per sample
        base[int(gi)] = min(base.get(int(gi), int(bi)), int(bi))
    return cohort, base


def macro_cohorts(cohort: np.ndarray, every: int, n_checkpoints: int) -> tuple[np.ndarray, dict[int, int]]:
    """Cohorts (checkpoint indices) joined in blocks of `every` checkpoint intervals: a block's cohort is its last
    checkpoint (every member trained by then; the last audited one for a block the series ends in), its base
    period the checkpoint before the block (before any member was trained). Returns (cohort of each sample,
    cohort -> base period); samples with no usable cohort keep theirs."""
    if every == 1:
        return cohort, {}
    usable = (cohort >= 1) & (cohort < n_checkpoints)
    block = np.where(usable, (cohort - 1) // every, -1)  # (samples,)
    last = n_checkpoints - 1
    out = np.where(usable, np.minimum((block + 1) * every, last), cohort)
    return out, {min((int(b) + 1) * every, last): int(b) * every for b in np.unique(block[usable])}
