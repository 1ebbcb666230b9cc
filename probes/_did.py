"""Callaway and Sant'Anna's group-time effects ATT(g, t) over a per-sample panel, from each group's moments.

A panel Y[t, i] (checkpoints x samples) is reduced once to the moments of each group of samples (a cohort, or
the never-treated): its size n, sums s1[t] and cross-products s2[t, t'] (of Y centred on each checkpoint's mean
over all samples, so the sums stay well conditioned). Every ATT(g, t) is a difference of means of Y[t] - Y[b]
over the members of cohort g and over a control set, so its estimate and its analytic standard error come from
those moments; so does the influence function of any weighted aggregate of them (event time, calendar time,
cohort, overall): on each group it is linear in a sample's Y, psi_i = Y_i . c_group + d_group. The multiplier
bootstrap needs, per group, A = sum_i v_i Y_i and S = sum_i v_i for each draw of Rademacher weights v; from
those, every bootstrap draw of every ATT(g, t) and aggregate follows. Nothing holds a (samples x effects)
matrix: memory is (groups x checkpoints^2) for the moments, and (groups x draws x checkpoints) plus (effects x
draws) for the bootstrap, whatever the number of samples; the samples are read in chunks.

Options as the `did` and `differences` packages name them: the base period `varying` (placebos against the
period before; effects against the cohort's base period) or `universal` (everything against the cohort's base
period; the base period itself is a reference cell, ATT 0); controls `never_treated` or `not_yet_treated` (the
never-treated and the samples of cohorts not yet trained at max(t, base): a cohort whose base period is at or
after it). The influence functions are normalised as in `differences`: var(estimate) = sum_i psi_i^2 / N^2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

BASE_PERIODS = ("varying", "universal")
CONTROL_GROUPS = ("never_treated", "not_yet_treated")
WALD_MAX_PLACEBOS = 2000
"""With not-yet-treated controls the Wald pre-trend test inverts the placebos' dense (K x K) covariance: it is
computed up to this many placebos."""
WALD_MAX_DRIFT, WALD_WARN_DRIFT = 1.0, 0.25
"""How far (in the chi-squared's standard deviations) the Wald statistic over every cell may drift above its null
distribution, its covariance being estimated from each cohort's members, before it is not given, and before it
comes with a warning."""
CHUNK = 8192
"""Samples per chunk of the bootstrap's pass over the panel."""
ZERO_SE = math.sqrt(np.finfo(float).eps) * 10
"""Bootstrap standard errors at or below this are zero (a reference cell): left out of sup statistics, as `did`."""


@dataclass
class Groups:
    """The panel reduced to moments: groups 0..G-1 are the cohorts (checkpoint index `cohort[p]`, base period
    `base[p]`), group G the never-treated. `member` (N,) is each sample's group."""

    cohort: np.ndarray  # (G,) checkpoint index at which each cohort is first observed trained
    base: np.ndarray  # (G,) its base period: the last checkpoint before any member trained
    member: np.ndarray  # (N,) group of each sample
    n: np.ndarray  # (G + 1,) samples per group
    s1: np.ndarray  # (G + 1, T) sums of centred Y
    s2: np.ndarray  # (G + 1, T, T) cross-products of centred Y

    @property
    def total(self) -> int:
        return int(self.n.sum())

    @property
    def never(self) -> int:
        return len(self.cohort)

    @property
    def checkpoints(self) -> int:
        return self.s1.shape[1]


def moments(y: np.ndarray, cohort: np.ndarray, treated: np.ndarray, control: np.ndarray,
            base: dict[int, int] | None = None) -> tuple[Groups, np.ndarray]:
    """Group the samples (treated by cohort, controls as never-treated; others left out) and take their moments.
    y: (T, N). Returns the groups and the centred panel of the samples kept, (T, kept)."""
    keep = treated | control
    y = np.asarray(y, dtype=np.float64)[:, keep]  # (T, kept)
    cohorts = np.unique(cohort[treated])
    member = np.where(treated[keep], np.searchsorted(cohorts, cohort[keep]), len(cohorts))  # (kept,)
    center = y.mean(axis=1)  # (T,)
    yc = y - center[:, None]  # (T, kept)
    g1, t_all = len(cohorts) + 1, y.shape[0]
    n = np.bincount(member, minlength=g1).astype(np.float64)
    s1 = np.zeros((g1, t_all))
    s2 = np.zeros((g1, t_all, t_all))
    for p in range(g1):
        rows = yc[:, member == p]  # (T, n_p)
        s1[p] = rows.sum(axis=1)
        s2[p] = rows @ rows.T
    bases = np.array([(base or {}).get(int(g), int(g) - 1) for g in cohorts], dtype=np.int64)
    return Groups(cohorts.astype(np.int64), bases, member, n, s1, s2), yc


@dataclass
class Cells:
    """Every ATT(g, t) of a design, as arrays over cells."""

    group: np.ndarray  # (K,) cohort's group index
    g: np.ndarray  # (K,) cohort's checkpoint index
    t: np.ndarray  # (K,) checkpoint
    b: np.ndarray  # (K,) base period
    m: np.ndarray  # (K,) controls: the never-treated and cohorts whose base period is >= m (m = T: none)
    att: np.ndarray  # (K,)
    mean_g: np.ndarray  # (K,) mean change of the cohort's members (centred Y)
    mean_c: np.ndarray  # (K,) mean change of the controls
    n_g: np.ndarray  # (K,) the cohort's members
    n_c: np.ndarray  # (K,) controls
    var_g: np.ndarray  # (K,) the members' part of se^2
    var_c: np.ndarray  # (K,) the controls' part of se^2

    @property
    def se(self) -> np.ndarray:
        """The analytic standard error of each ATT(g, t). (K,)"""
        return np.sqrt(self.var_g + self.var_c)

    @property
    def placebo(self) -> np.ndarray:
        """Cells before training, other than a reference cell (t = b)."""
        return (self.t < self.g) & (self.t != self.b)

    @property
    def post(self) -> np.ndarray:
        return self.t >= self.g

    @property
    def welch_df(self) -> np.ndarray:
        """Welch-Satterthwaite degrees of freedom of each difference of two means. (K,)"""
        with np.errstate(invalid="ignore", divide="ignore"):
            spread = self.var_g ** 2 / (self.n_g - 1) + self.var_c ** 2 / (self.n_c - 1)
            return (self.var_g + self.var_c) ** 2 / spread


def cells(groups: Groups, base_period: str = "varying", control_group: str = "never_treated") -> Cells:
    """Every ATT(g, t) with its analytic standard error. Base period: the cohort's for t >= g; for t before it, the
    period before t (varying) or the cohort's again (universal, the base period itself a reference cell of ATT 0).
    The periods between a macro-cohort's base and its first checkpoint, while its members were trained, are
    neither."""
    t_all = groups.checkpoints
    parts = []
    for p, (g, base) in enumerate(zip(groups.cohort, groups.base)):
        t = np.arange(t_all)
        b = np.where(t >= g, base, t - 1 if base_period == "varying" else base)
        keep = (b >= 0) & ~((base < t) & (t < g))
        if base_period == "varying":
            keep &= b != t
        parts.append(np.stack([np.full(keep.sum(), p), np.full(keep.sum(), g), t[keep], b[keep]]))
    group, g, t, b = np.concatenate(parts, axis=1) if parts else np.zeros((4, 0), dtype=np.int64)
    m = np.maximum(t, b) if control_group == "not_yet_treated" else np.full(len(t), t_all)
    n, s1, s2 = groups.n, groups.s1, groups.s2
    n_g = n[group]
    mean_g = (s1[group, t] - s1[group, b]) / n_g
    ss_g = s2[group, t, t] + s2[group, b, b] - 2 * s2[group, t, b] - n_g * mean_g ** 2
    un, u1, u2 = (by_threshold(groups, x) for x in (n, s1, s2))  # (T + 1,), (T + 1, T), (T + 1, T, T)
    own = groups.base[group] >= m  # the cell's own cohort is among the not-yet-treated: not a control of itself
    n_c = un[m] - np.where(own, n_g, 0)
    c1t, c1b = u1[m, t] - np.where(own, s1[group, t], 0), u1[m, b] - np.where(own, s1[group, b], 0)
    c2 = (u2[m, t, t] + u2[m, b, b] - 2 * u2[m, t, b]
          - np.where(own, s2[group, t, t] + s2[group, b, b] - 2 * s2[group, t, b], 0))
    mean_c = (c1t - c1b) / n_c
    ss_c = c2 - n_c * mean_c ** 2
    var_g, var_c = np.maximum(ss_g, 0) / n_g ** 2, np.maximum(ss_c, 0) / n_c ** 2
    return Cells(group, g, t, b, m, mean_g - mean_c, mean_g, mean_c, n_g, n_c, var_g, var_c)


def by_threshold(groups: Groups, per_group: np.ndarray) -> np.ndarray:
    """A per-group quantity (G + 1, ...) summed over each control set by threshold m = 0..T: the never-treated's
    plus that of every cohort whose base period is >= m (m = T: the never-treated's alone). (T + 1, ...)"""
    out = np.zeros((groups.checkpoints + 1,) + per_group.shape[1:])
    np.add.at(out, groups.base, per_group[:groups.never])
    return np.flip(np.cumsum(np.flip(out, 0), 0), 0) + per_group[groups.never]


@dataclass
class Family:
    """Aggregates of cells: aggregate a = sum_k weights[k, a] ATT_k over the cells `sel`, plus (for cohort-size
    weights, which are estimated) the influence of the weights: `wif[p, a]` on the members of cohort group p."""

    sel: np.ndarray  # (K_sel,) cell indices
    weights: np.ndarray  # (K_sel, A)
    theta: np.ndarray  # (A,)
    wif: np.ndarray  # (G, A)


def by_cohort_size(c: Cells, groups: Groups, chosen: list[np.ndarray]) -> Family:
    """Each aggregate: the cohort-size weighted mean of the cells in `chosen[a]` (at most one per cohort), with
    the influence of estimating the weights (Callaway and Sant'Anna; `differences`' get_wif)."""
    sel = np.unique(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)
    where = {int(k): i for i, k in enumerate(sel)}
    weights = np.zeros((len(sel), len(chosen)))
    theta = np.zeros(len(chosen))
    wif = np.zeros((groups.never, len(chosen)))
    for a, ks in enumerate(chosen):
        sizes = groups.n[c.group[ks]]
        w = sizes / sizes.sum()
        weights[[where[int(k)] for k in ks], a] = w
        theta[a] = float(w @ c.att[ks])
        share = sizes.sum() / groups.total  # P(G in the chosen cohorts)
        np.add.at(wif[:, a], c.group[ks], (c.att[ks] - theta[a]) / share)
    return Family(sel, weights, theta, wif)


def cohort_means(c: Cells, groups: Groups, cohorts: list[int]) -> Family:
    """Each cohort's mean effect after its training (`differences`' cohort aggregation: equal weights over its
    post-treatment cells, no weight estimation)."""
    chosen = [np.flatnonzero(c.post & (c.group == p)) for p in cohorts]
    sel = np.concatenate(chosen) if chosen else np.zeros(0, dtype=np.int64)
    weights = np.zeros((len(sel), len(chosen)))
    start = 0
    for a, ks in enumerate(chosen):
        weights[start:start + len(ks), a] = 1.0 / len(ks)
        start += len(ks)
    theta = np.array([c.att[ks].mean() for ks in chosen])
    return Family(sel, weights, theta, np.zeros((groups.never, len(chosen))))


def overall(c: Cells, groups: Groups) -> Family:
    """Callaway and Sant'Anna's overall effect: the cohort-size weighted mean of each cohort's mean effect after
    its training, with the influence of the weights."""
    cohorts = sorted({int(p) for p in c.group[c.post]})
    means = cohort_means(c, groups, cohorts)
    sizes = groups.n[cohorts]
    s = sizes / sizes.sum()
    theta = float(s @ means.theta)
    wif = np.zeros((groups.never, 1))
    wif[cohorts, 0] = (means.theta - theta) / (sizes.sum() / groups.total)
    return Family(means.sel, means.weights @ s[:, None], np.array([theta]), wif)


def coefficients(c: Cells, groups: Groups, fam: Family) -> tuple[np.ndarray, np.ndarray]:
    """The influence functions of a family as psi_i = Yc_i . C[group(i), :, a] + D[group(i), a]: C (G + 1, T, A),
    D (G + 1, A). A member of cohort g in cell k weighs n / n_g (its change - the cohort's mean change), a
    control -n / n_controls (its change - the controls' mean change)."""
    g_never, t_all, n_agg = groups.never, groups.checkpoints, fam.weights.shape[1]
    k = fam.sel
    group, t, b, m = c.group[k], c.t[k], c.b[k], c.m[k]
    coef = np.zeros((g_never + 1, t_all, n_agg))
    const = np.zeros((g_never + 1, n_agg))
    w_m = fam.weights * (groups.total / groups.n[group])[:, None]  # (K_sel, A)
    np.add.at(coef, (group, t), w_m)
    np.add.at(coef, (group, b), -w_m)
    np.add.at(const, group, -w_m * c.mean_g[k][:, None])
    w_c = fam.weights * (-groups.total / c.n_c[k])[:, None]
    if (m >= t_all).all():  # never-treated controls only
        np.add.at(coef[g_never], t, w_c)
        np.add.at(coef[g_never], b, -w_c)
        const[g_never] -= (w_c * c.mean_c[k][:, None]).sum(axis=0)
    else:  # not yet treated: cohort p is a control of cell k when base[p] >= m[k] (and p is not k's cohort)
        by_m = np.zeros((t_all + 1, t_all, n_agg))
        const_m = np.zeros((t_all + 1, n_agg))
        np.add.at(by_m, (m, t), w_c)
        np.add.at(by_m, (m, b), -w_c)
        np.add.at(const_m, m, -w_c * c.mean_c[k][:, None])
        by_m, const_m = np.cumsum(by_m, axis=0), np.cumsum(const_m, axis=0)  # cells with threshold <= m
        coef[g_never] += by_m[t_all]
        const[g_never] += const_m[t_all]
        coef[:g_never] += by_m[groups.base]
        const[:g_never] += const_m[groups.base]
        own = groups.base[group] >= m
        np.add.at(coef, (group[own], t[own]), -w_c[own])
        np.add.at(coef, (group[own], b[own]), w_c[own])
        np.add.at(const, group[own], w_c[own] * c.mean_c[k][own][:, None])
    const[:g_never] += fam.wif
    return coef, const


def standard_errors(groups: Groups, coef: np.ndarray, const: np.ndarray) -> np.ndarray:
    """sqrt(sum_i psi_i^2) / N for each aggregate, from the groups' moments. (A,)"""
    quad = np.einsum("gta,gta->a", coef, np.matmul(groups.s2, coef))
    lin = 2 * np.einsum("ga,ga->a", const, np.einsum("gt,gta->ga", groups.s1, coef))
    total = quad + lin + np.einsum("g,ga->a", groups.n, const ** 2)
    return np.sqrt(np.maximum(total, 0)) / groups.total


def covariance(groups: Groups, coef: np.ndarray, const: np.ndarray) -> np.ndarray:
    """The aggregates' covariance sum_i psi_ia psi_ib / N^2 from the groups' moments: (A, A). Each group adds its
    samples' psi psi' over the aggregates its influence reaches (a cohort reaches only its own cells' ones)."""
    cov = np.zeros((coef.shape[2], coef.shape[2]))
    for p in range(len(groups.n)):
        cols = np.flatnonzero(np.any(coef[p] != 0, axis=0) | (const[p] != 0))
        cp, dp = coef[p][:, cols], const[p][cols]  # (T, A_p), (A_p,)
        linear = np.outer(groups.s1[p] @ cp, dp)
        cov[np.ix_(cols, cols)] += cp.T @ groups.s2[p] @ cp + linear + linear.T + groups.n[p] * np.outer(dp, dp)
    return cov / groups.total ** 2


def wald_of(theta: np.ndarray, cov: np.ndarray) -> dict | None:
    """theta' cov^-1 theta, its degrees of freedom and chi-squared p-value; None when cov is singular."""
    if not len(theta) or _singular(cov):
        return None
    statistic = float(theta @ np.linalg.solve(cov, theta))
    return {"wald": statistic, "df": len(theta), "p": _chi2_p(statistic, len(theta))}


def _chi2_p(statistic: float, df: int) -> float:
    from scipy.stats import chi2

    return float(chi2.sf(statistic, df))


@dataclass
class Draws:
    """The multiplier bootstrap's sums per group: A[p, d] = sum_i v_di Yc_i over group p, S[p, d] = sum_i v_di."""

    a: np.ndarray  # (G + 1, draws, T)
    s: np.ndarray  # (G + 1, draws)


def bootstrap_sums(groups: Groups, yc: np.ndarray, draws: int, seed: int) -> Draws:
    """One seeded pass over the samples (in chunks, in group order) with Rademacher weights v_di."""
    rng = np.random.default_rng(seed)
    order = np.argsort(groups.member, kind="stable")
    g1, t_all = len(groups.n), yc.shape[0]
    a = np.zeros((g1, draws, t_all))
    s = np.zeros((g1, draws))
    for start in range(0, len(order), CHUNK):
        idx = order[start:start + CHUNK]
        v = rng.integers(0, 2, size=(draws, len(idx)), dtype=np.int8).astype(np.float64) * 2 - 1  # (draws, chunk)
        member = groups.member[idx]
        for p in np.unique(member):
            cols = member == p
            a[p] += v[:, cols] @ yc[:, idx[cols]].T  # (draws, T)
            s[p] += v[:, cols].sum(axis=1)
    return Draws(a, s)


def family_draws(boot: Draws, groups: Groups, coef: np.ndarray, const: np.ndarray) -> np.ndarray:
    """Each bootstrap draw of each aggregate minus its estimate: (draws, A)."""
    g1, draws, t_all = boot.a.shape
    z = boot.a.transpose(1, 0, 2).reshape(draws, g1 * t_all) @ coef.reshape(g1 * t_all, -1)
    return (z + boot.s.T @ const) / groups.total


def cell_draws(boot: Draws, groups: Groups, c: Cells) -> np.ndarray:
    """Each bootstrap draw of each ATT(g, t) minus its estimate: (K, draws)."""
    g_never, t_all = groups.never, boot.a.shape[2]
    out = np.empty((len(c.att), boot.a.shape[1]))
    not_yet = (c.m < t_all).any()
    if not_yet:  # sums of the control sets by threshold m: never-treated + cohorts with base >= m
        ua, us = by_threshold(groups, boot.a), by_threshold(groups, boot.s)
    for p in range(g_never):
        ks = np.flatnonzero(c.group == p)
        t, b = c.t[ks], c.b[ks]
        member = (boot.a[p][:, t] - boot.a[p][:, b] - boot.s[p][:, None] * c.mean_g[ks]) / groups.n[p]  # (draws, k)
        if not_yet:
            m = c.m[ks]
            own = (groups.base[p] >= m)[None, :]
            ca = ua[m, :, t].T - ua[m, :, b].T - np.where(own, boot.a[p][:, t] - boot.a[p][:, b], 0)
            cs = us[m].T - np.where(own, boot.s[p][:, None], 0)
        else:
            ca = boot.a[g_never][:, t] - boot.a[g_never][:, b]
            cs = boot.s[g_never][:, None]
        control = (ca - cs * c.mean_c[ks]) / c.n_c[ks]
        out[ks] = (member - control).T
    return out


def bootstrap_se(z: np.ndarray) -> np.ndarray:
    """`did`'s bootstrap standard error: the interquartile range of the draws over that of a standard normal.
    z: (K, draws) -> (K,)."""
    q25, q75 = np.quantile(z, [0.25, 0.75], axis=1)
    return (q75 - q25) / 1.3489795003921634


def sup_critical(z: np.ndarray, se: np.ndarray, level: float) -> float:
    """The `level` quantile over draws of max_k |z_k| / se_k (z: (draws, K)), over the estimates with a standard
    error; NaN when none has one."""
    ok = se > ZERO_SE
    if not ok.any():
        return float("nan")
    return float(np.quantile(np.abs(z[:, ok] / se[ok]).max(axis=1), level))


def wald(c: Cells, groups: Groups) -> dict:
    """Joint test that the placebo ATT(g, t) are all zero: W = theta' V^-1 theta, chi-squared with K degrees of
    freedom, V their covariance from the influence functions. Like `did`, no statistic when V is singular, nor
    when V rests on too few members per cohort for its placebos (WALD_MAX_DRIFT); the event-time test then stands.
    With never-treated controls V is block diagonal (one block per cohort) plus the controls' part, of rank < T,
    so W comes exactly from the blocks and the Woodbury identity at any number of placebos; with not-yet-treated
    controls V is dense, and W is computed up to WALD_MAX_PLACEBOS."""
    ks = np.flatnonzero(c.placebo)
    none = {"pretrend_wald": None, "pretrend_df": len(ks), "pretrend_p": None}
    if not len(ks):
        return none
    per_cohort = np.bincount(c.group[ks], minlength=groups.never).astype(np.float64)  # placebos of each cohort
    room = groups.n[:groups.never] - per_cohort - 2
    # each cohort's block is a covariance estimated from its members: Hotelling's statistic exceeds K by about
    # K (K + 1) / (n - K - 2) under the null; against the chi-squared's sd, sqrt(2 df), that is how far it drifts
    excess = float(np.sum(np.where(per_cohort > 0, per_cohort * (per_cohort + 1) / np.maximum(room, 1e-12), 0.0)))
    drift = np.inf if (room[per_cohort > 0] <= 0).any() else excess / math.sqrt(2 * len(ks))
    crowded = (f"with so few members per cohort for its placebos, the statistic drifts {drift:.2f} standard "
               "deviations above the chi-squared under the null" if math.isfinite(drift) else
               "some cohort has hardly more members than placebos")
    if drift > WALD_MAX_DRIFT:
        return {**none, "pretrend_note": f"{crowded}, so no Wald statistic over every cell (it would reject a true "
                                         "null); read pretrend_event_p"}
    never_only = bool((c.m[ks] >= groups.checkpoints).all())
    if not never_only and len(ks) > WALD_MAX_PLACEBOS:
        return {**none, "pretrend_note": f"{len(ks):,} placebo effects with not-yet-treated controls: the Wald test "
                                         f"(a dense covariance) is computed up to {WALD_MAX_PLACEBOS:,}; the joint "
                                         "test here is pretrend_event_p"}
    statistic = wald_by_blocks(c, groups, ks) if never_only else wald_dense(c, groups, ks)
    if statistic is None:
        return {**none, "pretrend_note": "the placebos' covariance is singular (cohorts with fewer samples than "
                                         "placebo effects make it so), so no Wald statistic over every cell; read "
                                         "pretrend_event_p"}
    out = {"pretrend_wald": statistic, "pretrend_df": len(ks), "pretrend_p": _chi2_p(statistic, len(ks))}
    if drift > WALD_WARN_DRIFT:
        out["pretrend_note"] = f"{crowded}: it rejects too often; prefer pretrend_event_p"
    return out


def _singular(matrix: np.ndarray) -> bool:
    eig = np.linalg.eigvalsh(matrix)
    return bool(eig.min() <= eig.max() * len(matrix) * np.finfo(float).eps)


def _centred(groups: Groups, p: int) -> np.ndarray:
    """Group p's centred cross-products over its size squared: (T, T)."""
    n = groups.n[p]
    return (groups.s2[p] - np.outer(groups.s1[p], groups.s1[p]) / n) / n ** 2


def wald_by_blocks(c: Cells, groups: Groups, ks: np.ndarray) -> float | None:
    """W with never-treated controls: V = B + Q' S Q, B block diagonal (cohort g's members: Q_g' S_g Q_g), S the
    controls' centred cross-products (T x T), Q the (T, K) map of each placebo to Y_t - Y_b. With S = L L',
    U = Q' L: W = theta' B^-1 theta - (U' B^-1 theta)' (I + U' B^-1 U)^-1 (U' B^-1 theta). None when a block is
    singular."""
    t_all = groups.checkpoints
    q = np.zeros((t_all, len(ks)))  # (T, K)
    q[c.t[ks], np.arange(len(ks))] += 1.0
    q[c.b[ks], np.arange(len(ks))] -= 1.0
    eig, vec = np.linalg.eigh(_centred(groups, groups.never))
    keep = eig > eig.max() * t_all * np.finfo(float).eps
    u = q.T @ (vec[:, keep] * np.sqrt(eig[keep]))  # (K, r)
    theta = c.att[ks]
    binv_theta, binv_u = np.empty_like(theta), np.empty_like(u)
    for p in np.unique(c.group[ks]):
        cols = np.flatnonzero(c.group[ks] == p)
        block = q[:, cols].T @ _centred(groups, p) @ q[:, cols]  # (K_g, K_g)
        if _singular(block):
            return None
        solved = np.linalg.solve(block, np.column_stack([theta[cols], u[cols]]))
        binv_theta[cols], binv_u[cols] = solved[:, 0], solved[:, 1:]
    inner = np.eye(u.shape[1]) + u.T @ binv_u  # (r, r)
    side = u.T @ binv_theta  # (r,)
    return float(theta @ binv_theta - side @ np.linalg.solve(inner, side))


def wald_dense(c: Cells, groups: Groups, ks: np.ndarray) -> float | None:
    """W from the dense covariance of the placebos, each placebo an aggregate of weight 1. None when it is
    singular."""
    coef, const = coefficients(c, groups, Family(ks, np.eye(len(ks)), c.att[ks], np.zeros((groups.never, len(ks)))))
    test = wald_of(c.att[ks], covariance(groups, coef, const))
    return None if test is None else test["wald"]
