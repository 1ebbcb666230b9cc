"""Seed replicates: lab series that differ only in their seed, their metrics' spread, and comparisons that
count as supported only beyond that spread.

A comparison of two quantities measured over seeds is a one-sided t-test at the 5% level: paired (the
difference of the same seed's two runs, e.g. the ID run and its baseline) or Welch's (two groups of
separately trained models, e.g. two sizes), with scipy's t quantiles at the exact (Welch: fractional)
degrees of freedom; the statistic and degrees of freedom equal scipy.stats.ttest_rel / ttest_ind's.
`supported` when the difference exceeds its critical value in the claimed direction, `reversed` when it
does the other way, else `not decidable` (within the spread).
"""

from __future__ import annotations

import json
import math

from memaudit.results.schema import (
    ReplicateGroup,
    SeriesResult,
    Spread,
    flat_metrics,
    is_number,
)

def t95(df: float) -> float:
    """The one-sided 95% critical t for `df` (possibly fractional: Welch's) degrees of freedom, scipy's
    Student t quantile; inf for fewer than one."""
    from scipy.stats import t

    return float(t.ppf(0.95, df)) if df >= 1 else math.inf


def spread(values: list) -> Spread:
    """Mean, sample standard deviation, range and count of the numbers among `values` (None: missing)."""
    numbers = [float(v) for v in values if is_number(v)]
    n = len(numbers)
    mean = sum(numbers) / n if n else None
    std = math.sqrt(sum((v - mean) ** 2 for v in numbers) / (n - 1)) if n > 1 else None
    return Spread(mean=mean, std=std, min=min(numbers, default=None), max=max(numbers, default=None), n=n,
                  values=[float(v) if is_number(v) else None for v in values])


def _group_key(series: SeriesResult) -> str | None:
    run = series.lab_run or {}
    if "seed" not in run:
        return None
    return json.dumps({k: v for k, v in run.items() if k != "seed"}, sort_keys=True, default=str)


def replicate_groups(series: list[SeriesResult]) -> list[ReplicateGroup]:
    """Group lab series by their run less the seed; per group every numeric series-probe metric's spread."""
    groups: dict[str, list[SeriesResult]] = {}
    for s in series:
        key = _group_key(s)
        if key is not None:
            groups.setdefault(key, []).append(s)
    out = []
    for members in groups.values():
        members.sort(key=lambda s: s.lab_run["seed"])
        metrics: dict[str, dict[str, dict[str, Spread]]] = {}
        for probe in dict.fromkeys(p for s in members for p in s.results):
            for dataset in dict.fromkeys(d for s in members for d in s.results.get(probe, {})):
                rows = [flat_metrics((s.results.get(probe) or {}).get(dataset, {})) for s in members]
                for name in dict.fromkeys(k for r in rows for k in r):
                    values = [r.get(name) for r in rows]
                    if any(is_number(v) for v in values):
                        metrics.setdefault(probe, {}).setdefault(dataset, {})[name] = spread(values)
        out.append(ReplicateGroup(name=members[0].lab_run.get("name", members[0].name),
                                  seeds=[s.lab_run["seed"] for s in members], series=[s.name for s in members],
                                  n_params=members[0].n_params, metrics=metrics))
    return out


def compare(a: list, b: list, paired: bool) -> dict:
    """Is a larger than b beyond the seeds' spread? `a`, `b`: values per seed (None: missing; paired: the
    same seed at the same position). Returns the mean difference a - b, its standard error, t, the degrees
    of freedom, the critical t and the verdict: supported (a > b), reversed (a < b) or not decidable."""
    if paired:
        diffs = [x - y for x, y in zip(a, b) if is_number(x) and is_number(y)]
        n = len(diffs)
        mean = sum(diffs) / n if n else None
        se = (math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1)) / math.sqrt(n)) if n > 1 else None
        df = n - 1
    else:
        xa, xb = [float(x) for x in a if is_number(x)], [float(x) for x in b if is_number(x)]
        sa, sb = spread(xa), spread(xb)
        mean = sa.mean - sb.mean if sa.mean is not None and sb.mean is not None else None
        if sa.std is None or sb.std is None:
            se, df = None, 0
        else:
            va, vb = sa.std ** 2 / sa.n, sb.std ** 2 / sb.n
            se = math.sqrt(va + vb)
            df = (va + vb) ** 2 / ((va ** 2 / (sa.n - 1)) + (vb ** 2 / (sb.n - 1))) if va + vb > 0 else sa.n + sb.n - 2
    out = {"difference": mean, "stderr": se, "t": None, "df": df, "t_critical": t95(df) if df else None,
           "verdict": "not decidable"}
    if mean is None or se is None:
        return out
    if se == 0:
        out["verdict"] = "supported" if mean > 0 else "reversed" if mean < 0 else "not decidable"
        return out
    out["t"] = mean / se
    if out["t"] > out["t_critical"]:
        out["verdict"] = "supported"
    elif out["t"] < -out["t_critical"]:
        out["verdict"] = "reversed"
    return out
