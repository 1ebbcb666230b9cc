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
from dataclasses import dataclass
from typing import Annotated, Literal

import numpy as np
from pydantic import ConfigDict, Field, with_config
from typing_extensions import TypedDict  # pydantic reads typing.TypedDict only from Python 3.12 on

from memaudit import Column, plots, probe, series_probe

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


@dataclass
class Estimate:
    """One ATT(g, t) and its influence function, kept sparse: it is zero outside cohort g and the controls, so
    only those values are stored (a panel of a million samples and hundreds of ATT(g, t) stays small)."""

    g: int  # cohort (checkpoint index)
    t: int  # checkpoint index
    base: int  # base period
    att: float
    on_members: np.ndarray  # (samples of cohort g,) influence of each member
    on_controls: np.ndarray  # (controls,) influence of each never-treated sample
    n: int  # every sample of the panel

    @property
    def se(self) -> float:
        """sqrt(sum psi^2) / N."""
        return float(np.sqrt((self.on_members ** 2).sum() + (self.on_controls ** 2).sum()) / self.n)


class Design:
    """Who is in which cohort: the index of each cohort's members and of the never-treated samples."""

    def __init__(self, cohort: np.ndarray, treated: np.ndarray, control: np.ndarray, base: dict | None = None):
        self.n = len(cohort)
        self.controls = np.flatnonzero(control)
        self.members = {int(g): np.flatnonzero(treated & (cohort == g)) for g in np.unique(cohort[treated])}
        # each cohort's base period: the last checkpoint before any member was trained (g - 1, unless a
        # macro-cohort's members were trained over several checkpoint intervals)
        self.base = {g: (base or {}).get(g, g - 1) for g in self.members}

    def dense(self, parts: list[tuple[float, Estimate]]) -> np.ndarray:
        """sum_k w_k psi_k as one (N,) array, from weighted sparse influence functions."""
        out = np.zeros(self.n)
        for w, e in parts:
            out[self.members[e.g]] += w * e.on_members
            out[self.controls] += w * e.on_controls
        return out


def att_gt(y: np.ndarray, design: Design) -> list[Estimate]:
    """Every ATT(g, t) with its influence function (normalised so that var(att) = sum(psi^2) / N^2).

    y: (T, N) outcomes over checkpoints. Base period: the cohort's (g - 1, or the start of a macro-cohort) for
    t >= g, t - 1 for placebos t <= that base (varying); the periods in between, while a macro-cohort's members
    were being trained, are neither."""
    n, n_c = design.n, len(design.controls)
    y_c = y[:, design.controls]  # (T, controls)
    out = []
    for g, members in design.members.items():
        y_g = y[:, members]  # (T, members)
        for t in range(y.shape[0]):
            base = design.base[g] if t >= g else t - 1
            if base < 0 or base == t or design.base[g] < t < g:
                continue
            dy_g, dy_c = y_g[t] - y_g[base], y_c[t] - y_c[base]
            mean_g, mean_c = float(dy_g.mean()), float(dy_c.mean())
            out.append(Estimate(g, t, base, mean_g - mean_c, n / len(members) * (dy_g - mean_g),
                                -n / n_c * (dy_c - mean_c), n))
    return out


def aggregate(estimates: list[Estimate], design: Design, keep) -> tuple[float, np.ndarray] | None:
    """The cohort-size weighted mean of the ATT(g, t) that `keep(g, t)` selects (at most one per cohort), with
    its (dense) influence function, including the estimation of the weights; None when none is selected."""
    chosen = [e for e in estimates if keep(e.g, e.t)]
    if not chosen:
        return None
    sizes = np.array([float(len(design.members[e.g])) for e in chosen])
    weights = sizes / sizes.sum()
    theta = float(sum(w * e.att for w, e in zip(weights, chosen)))
    influence = design.dense(list(zip(weights, chosen)))
    share = sizes.sum() / design.n  # P(G in the selected cohorts): the weights are estimated too
    for e in chosen:
        influence[design.members[e.g]] += (e.att - theta) / share
    return theta, influence


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


def wald_pretrend(placebos: list[Estimate], design: Design) -> dict:
    """Joint test that the placebo ATT(g, t), t < g, are all zero: W = theta' V^-1 theta, chi-squared, with V
    from the sparse influence functions (two placebos share the controls, and the members when of one cohort)."""
    from scipy.stats import chi2

    if not placebos:
        return {"pretrend_wald": None, "pretrend_df": 0, "pretrend_p": None}
    theta = np.array([e.att for e in placebos])
    on_controls = np.stack([e.on_controls for e in placebos], axis=1)  # (controls, K)
    cov = on_controls.T @ on_controls  # (K, K)
    for g in {e.g for e in placebos}:
        ks = [k for k, e in enumerate(placebos) if e.g == g]
        block = np.stack([placebos[k].on_members for k in ks], axis=1)  # (members, K_g)
        cov[np.ix_(ks, ks)] += block.T @ block
    cov /= design.n ** 2
    wald = float(theta @ np.linalg.pinv(cov) @ theta)
    df = int(np.linalg.matrix_rank(cov))
    return {"pretrend_wald": wald, "pretrend_df": df, "pretrend_p": float(chi2.sf(wald, df)) if df else None}


def profile(y: np.ndarray, cohort: np.ndarray, treated: np.ndarray, control: np.ndarray, steps: list[int],
            seed: int = 0, level: float = 0.95, draws: int = 999, base: dict | None = None,
            residual_at: int | None = None) -> dict:
    """Every estimate of the memorization profile from a panel y (T, N): ATT(g, t) with standard errors,
    event-time effects with pointwise and simultaneous intervals, instantaneous / persistent / residual /
    per-cohort / overall memorization, and the pre-trend test. `base`: cohort -> its base period, for
    macro-cohorts (default g - 1); `residual_at`: the checkpoint index the residual effect is read at (default
    the last)."""
    from scipy.stats import norm

    z = float(norm.ppf(0.5 + level / 2))
    design = Design(cohort, treated, control, base)
    estimates = att_gt(y, design)
    effects = [e for e in estimates if e.t >= e.g]
    placebos = [e for e in estimates if e.t < e.g]
    last = y.shape[0] - 1 if residual_at is None else residual_at
    out: dict = {"checkpoint_steps": list(steps),
                 "cohort_steps": sorted({steps[e.g] for e in estimates}),
                 "att": [{"cohort_step": steps[e.g], "step": steps[e.t], "att": e.att, "se": e.se} for e in estimates]}

    def summary(name: str, result) -> None:
        if result is None:
            out.update({name: None, f"{name}_se": None, f"{name}_lo": None, f"{name}_hi": None})
            return
        theta, psi = result
        se = standard_error(psi)
        out.update({name: theta, f"{name}_se": se, f"{name}_lo": theta - z * se, f"{name}_hi": theta + z * se})

    events = sorted({e.t - e.g for e in estimates})
    curve = [(k, aggregate(estimates, design, lambda g, t, k=k: t - g == k)) for k in events]
    curve = [(k, r) for k, r in curve if r is not None]
    critical = bootstrap_critical(np.stack([psi for _, (_, psi) in curve], axis=1), seed, draws, level) \
        if curve else float("nan")
    out["event_time"] = []
    for k, (theta, psi) in curve:
        se = standard_error(psi)
        out["event_time"].append({"e": k, "att": theta, "se": se, "lo": theta - z * se, "hi": theta + z * se,
                                  "band_lo": theta - critical * se, "band_hi": theta + critical * se})
    out["band_critical"] = critical if math.isfinite(critical) else None
    summary("instantaneous", dict(curve).get(0))
    for k, result in curve:
        if k >= 1:
            summary(f"persistent[e={k}]", result)
    summary("residual", aggregate(estimates, design, lambda g, t: t == last and g < last))
    summary("overall", _overall(effects, design))
    out["per_cohort"] = {str(steps[g]): float(np.mean([e.att for e in effects if e.g == g]))
                         for g in sorted({e.g for e in effects})}
    out.update(wald_pretrend(placebos, design))
    return out


def _overall(effects: list[Estimate], design: Design):
    """Callaway and Sant'Anna's overall effect: the cohort-size weighted mean of each cohort's mean effect after
    its training (each cohort's mean is one Estimate whose influence is the mean of its ATT(g, t)'s)."""
    by_cohort: dict[int, list[Estimate]] = {}
    for e in effects:
        by_cohort.setdefault(e.g, []).append(e)
    means = [Estimate(g, g, g - 1, float(np.mean([e.att for e in rows])), np.mean([e.on_members for e in rows], axis=0),
                      np.mean([e.on_controls for e in rows], axis=0), design.n) for g, rows in by_cohort.items()]
    return aggregate(means, design, lambda g, t: True)


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
    "event_time": "the effect by event time e = checkpoint - cohort (e < 0: placebos), with pointwise intervals "
                  "(lo, hi) and simultaneous bands (band_lo, band_hi, multiplier bootstrap)",
    "att": "every ATT(g, t): cohort g (the step of its first checkpoint after training) at checkpoint t, with its "
           "standard error",
    "pretrend_p": "p-value of the Wald test that every placebo effect (before training) is zero: small values "
                  "say the design's assumption (parallel trends) fails; pretrend_wald, pretrend_df beside it. The "
                  "test is asymptotic: with small cohorts (tens of samples) and many placebos it rejects too often "
                  "(~15% at 5% with cohorts of 40 and 10 placebos; ~5% with cohorts of 200)",
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


@with_config(ConfigDict(extra="forbid"))
class StepWindow(TypedDict, total=False):
    """`steps: {min: ..., max: ...}`: the training steps a profile looks at (both ends included)."""

    min: Annotated[int, Field(ge=0)]
    max: Annotated[int, Field(ge=0)]


@series_probe(metrics=PROFILE_METRICS, uses=("memorization", "sample_outcomes"), figures=(fig_profile,),
              validate=_validate, opt_in=True, not_numbers=("per_cohort", "event_time", "att", "outcome", "note", "window"),
              show=("instantaneous", "instantaneous_lo", "instantaneous_hi", "persistent[e=1]", "residual",
                    "residual_lo", "residual_hi", "overall", "pretrend_p", "n_treated", "n_control", "note"),
              names=lambda params, params_of: _names())
def memorization_profile(panel, datasets, ledger,
                         outcome: Literal["loglik", "loglik_suffix", "M", "rank", "entropy"] = "loglik",
                         cohort_every: Annotated[int, Field(ge=1)] = 1,
                         cohort_steps: Annotated[int, Field(ge=1)] | None = None,
                         steps: StepWindow | list[Annotated[int, Field(ge=0)]] | None = None,
                         residual_at: Annotated[int, Field(ge=0)] | None = None,
                         level: Annotated[float, Field(gt=0, lt=1)] = 0.95,
                         draws: Annotated[int, Field(ge=99, le=100_000)] = 999, seed: int = 0):
    """Memorization as a causal effect (Lesci et al. 2024): difference in differences over the per-sample panel,
    trained samples as cohorts by training step, held-out samples as never-treated controls. `cohort_every: N`
    joins the cohorts of N consecutive checkpoint intervals into one, measured from the checkpoint before its
    first member trained. `steps` limits the panel to the checkpoints in a window (`{max: 95000}`: Pythia's first
    epoch) or a list of steps, and so the cohorts to samples trained within it; `residual_at` is the step the
    residual effect is read at (default: the window's last checkpoint). Runs when the yaml's `probes:` names it
    (`memorization_profile: {outcome: loglik}`)."""
    if panel is None:
        return {}
    probe, column, sign = OUTCOMES[outcome]
    controls = [d.name for d in datasets if d.role in CONTROL_ROLES and panel.has(probe, column, d.name)]
    out = {}
    for d in (d for d in datasets if d.role == "train"):
        if not panel.has(probe, column, d.name):
            out[d.name] = {"outcome": outcome, "note": f"no per-sample {probe}.{column} on this data set, so no "
                           f"'{outcome}' outcome" + (": its samples are shorter than memorization's k + m tokens (or "
                                                     "the model is not causal)" if column == "suffix_loss" else "")}
            continue
        out[d.name] = _profile_of(panel, d.name, controls, ledger, probe, column, sign, outcome, cohort_every,
                                  level, draws, seed, steps, residual_at, cohort_steps)
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


def _profile_of(panel, dataset: str, controls: list[str], ledger, probe: str, column: str, sign: float,
                outcome: str, cohort_every: int, level: float, draws: int, seed: int, window=None,
                residual_at: int | None = None, cohort_steps: int | None = None) -> dict:
    """The profile of one trained data set against every never-trained sample, over the checkpoints in `window`."""
    rows = in_window(panel.steps, window)
    steps = [panel.steps[t] for t in rows]
    said = {"outcome": outcome, **({"window": window} if window is not None else {})}
    if len(steps) < 2 or None in steps:
        where = " in the window (steps)" if window is not None else ""
        return {**said, "note": f"a profile needs at least 2 checkpoints with training steps{where}; "
                                f"the panel's steps: {panel.steps}"}
    if residual_at is not None and residual_at not in steps:
        return {**said, "note": f"residual_at: {residual_at} is no checkpoint step of the profile; its steps: {steps}"}
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
    y = np.concatenate([sign * panel.values(probe, column, dataset)[rows][:, usable]]
                       + [sign * panel.values(probe, column, c)[rows][:, keep] for c, keep in zip(controls, never)],
                       axis=1)  # (checkpoints in the window, samples)
    n_control = y.shape[1] - int(usable.sum())
    treated = np.arange(y.shape[1]) < usable.sum()
    cohorts = np.concatenate([cohort[usable], np.full(n_control, -1)])
    counts.update(n_treated=int(usable.sum()), n_control=n_control,
                  n_control_trained=int(sum((~keep).sum() for keep in never)))
    if not usable.any() or not n_control:
        why = ("no never-trained samples" if not n_control else
               "no trained sample has a checkpoint before and after its training step")
        return {**counts, "note": why}
    at = steps.index(residual_at) if residual_at is not None else len(steps) - 1
    return {**counts, "residual_at": steps[at],
            **profile(y, cohorts, treated, ~treated, steps, seed=seed, level=level, draws=draws, base=base,
                      residual_at=at)}


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
