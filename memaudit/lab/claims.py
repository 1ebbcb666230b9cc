"""The paper's claims, judged from audits of the lab's recipes trained with seed replicates.

Each claim names its recipe, the series metric it rests on and the comparisons between replicate groups
that would show it; a comparison counts only beyond the spread over seeds (memaudit.results.replicates:
one-sided t-tests at 5%, Welch's between separately trained groups, paired for gains that are already
differences of the same seed's runs). Verdicts:

- reproduced: every comparison goes the claimed way beyond the spread (for "no effect" claims: none differs);
- not reproduced: a comparison goes the other way beyond the spread (for "no effect" claims: one differs);
- not decidable at this scale: the rest (differences within the spread, or a metric never reached).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from memaudit.results.replicates import compare, spread
from memaudit.results.schema import AuditReport, ReplicateGroup

REPRODUCED, NOT_REPRODUCED, UNDECIDED = "reproduced", "not reproduced", "not decidable at this scale"


@dataclass
class Claim:
    """One claim of the paper, as measured: values per group, comparisons and the verdict."""

    claim: str
    recipe: str
    metric: str
    values: dict[str, dict] = field(default_factory=dict)  # group -> {mean, std, n, values}
    comparisons: list[dict] = field(default_factory=list)  # {"a", "b", "claimed", difference, t, df, verdict}
    verdict: str = UNDECIDED
    note: str = ""


def _groups(report: AuditReport, names: list[str] | None = None) -> list[ReplicateGroup]:
    groups = {g.name: g for g in report.replicates}
    if names is None:
        return sorted(groups.values(), key=lambda g: g.n_params or 0)
    return [groups[n] for n in names if n in groups]


def _values(group: ReplicateGroup, probe: str, dataset: str, metric: str) -> list:
    s = group.metrics.get(probe, {}).get(dataset, {}).get(metric)
    return list(s.values) if s is not None else [None] * len(group.seeds)


def _ordered(claim: Claim, groups: list[ReplicateGroup], where: tuple[str, str, str], rising: bool) -> Claim:
    """`metric` rises (or falls) from each group to the next: Welch comparisons of neighbours."""
    for g in groups:
        claim.values[g.name] = spread(_values(g, *where)).model_dump()
    for low, high in zip(groups, groups[1:]):
        a, b = (_values(high, *where), _values(low, *where)) if rising else (_values(low, *where), _values(high, *where))
        result = compare(a, b, paired=False)
        claim.comparisons.append({"a": high.name if rising else low.name, "b": low.name if rising else high.name,
                                  "claimed": "a > b", **result})
    claim.verdict = _directional(claim.comparisons)
    return claim


def _directional(comparisons: list[dict]) -> str:
    """Reproduced when every comparison is supported, not reproduced when one is reversed, else undecided."""
    verdicts = [c["verdict"] for c in comparisons]
    if "reversed" in verdicts:
        return NOT_REPRODUCED
    return REPRODUCED if verdicts and all(v == "supported" for v in verdicts) else UNDECIDED


def _no_effect(claim: Claim, groups: list[ReplicateGroup], where: tuple[str, str, str]) -> Claim:
    """`metric` does not differ between any two groups beyond the spread (two-sided)."""
    for g in groups:
        claim.values[g.name] = spread(_values(g, *where)).model_dump()
    for i, a in enumerate(groups):
        for b in groups[i + 1:]:
            result = compare(_values(a, *where), _values(b, *where), paired=False)
            result["verdict"] = "differs" if result["verdict"] != "not decidable" else "no difference beyond the spread"
            claim.comparisons.append({"a": a.name, "b": b.name, "claimed": "a = b", **result})
    if not claim.comparisons or any(c["difference"] is None or c["stderr"] is None for c in claim.comparisons):
        claim.verdict = UNDECIDED
    elif any(c["verdict"] == "differs" for c in claim.comparisons):
        claim.verdict = NOT_REPRODUCED
    else:
        claim.verdict = REPRODUCED
        claim.note = "no difference beyond the spread; with 3 seeds only large differences would show"
    return claim


def _gain(claim: Claim, groups: list[ReplicateGroup], where: tuple[str, str, str]) -> Claim:
    """Gains (already paired differences per seed) above zero beyond their spread."""
    for g in groups:
        values = _values(g, *where)
        claim.values[g.name] = spread(values).model_dump()
        result = compare(values, [0.0 if v is not None else None for v in values], paired=True)
        claim.comparisons.append({"a": g.name, "b": "its baseline", "claimed": "gain > 0", **result})
    claim.verdict = _directional(claim.comparisons)
    return claim


def _pretrend(claim: Claim, groups: list[ReplicateGroup]) -> Claim:
    """The placebo effects before training are jointly zero: in each group, every seed's pre-trend test (the
    event-time placebos jointly, valid with the lab's small cohorts) has p >= 0.05 / seeds (Bonferroni over the
    group's seeds: with 3 sizes x 3 seeds, an uncorrected 0.05 would call a true null 'differs' 37% of the time)."""
    for g in groups:
        values = _values(g, "memorization_profile", "train", "pretrend_event_p")
        claim.values[g.name] = spread(values).model_dump()
        numbers = [v for v in values if v is not None]
        verdict = ("not decidable" if not numbers else "differs" if min(numbers) < 0.05 / len(numbers) else
                   "consistent with 0")
        claim.comparisons.append({"a": g.name, "b": "0", "claimed": "placebos = 0", "difference": None, "stderr": None,
                                  "t": None, "df": None, "t_critical": None, "verdict": verdict})
    verdicts = [c["verdict"] for c in claim.comparisons]
    claim.verdict = (NOT_REPRODUCED if "differs" in verdicts else
                     REPRODUCED if verdicts and all(v == "consistent with 0" for v in verdicts) else UNDECIDED)
    return claim


def _dose(claim: Claim, group: ReplicateGroup, levels: list[int], metric: str = "gain") -> Claim:
    """A twin metric (the gain over the twin; ROUGE-L, approximate memorization) rises from each duplication level to
    the next (paired by seed)."""
    where = [("twin", f"perturb[dup={level}]", metric) for level in levels]
    for level, w in zip(levels, where):
        claim.values[f"{group.name} dup={level}"] = spread(_values(group, *w)).model_dump()
    for (low, a), (high, b) in zip(zip(levels, where), list(zip(levels, where))[1:]):
        result = compare(_values(group, *b), _values(group, *a), paired=True)
        claim.comparisons.append({"a": f"dup={high}", "b": f"dup={low}", "claimed": "a > b", **result})
    claim.verdict = _directional(claim.comparisons)
    return claim


def _paired_metrics(claim: Claim, group: ReplicateGroup, dataset: str, better: str, worse: str) -> Claim:
    """Metric `better` above metric `worse` on the same seeds (e.g. the reference attack's AUC over the loss's)."""
    a, b = _values(group, "twin", dataset, better), _values(group, "twin", dataset, worse)
    claim.values[f"{group.name} {better}"], claim.values[f"{group.name} {worse}"] = (spread(a).model_dump(),
                                                                                     spread(b).model_dump())
    claim.comparisons.append({"a": better, "b": worse, "claimed": "a > b", **compare(a, b, paired=True)})
    claim.verdict = _directional(claim.comparisons)
    return claim


def _horizon_baselines(report: AuditReport, names: list[str]) -> list[ReplicateGroup]:
    """Groups carrying `baseline_min_common`: each seed's minimum M on the special batch within the steps
    since injection that every group's curve reaches (a later injection leaves less training to decay in,
    so the minimum over the rest of training compares unequal spans)."""
    groups = _groups(report, names)
    series = {s.name: s for s in getattr(report, "series", [])}
    if any(name not in series for g in groups for name in g.series):
        return []
    curves = {name: series[name].results.get("forgetting", {}).get("special", {}) for g in groups for name in g.series}
    horizon = min((max(c["steps_since"]) for c in curves.values() if c.get("steps_since")), default=None)
    out = []
    for g in groups:
        values = []
        for name in g.series:
            c = curves[name]
            later = [m for t, m in zip(c.get("steps_since", []), c.get("M_curve", [])) if 0 < t <= (horizon or 0)]
            values.append(min(later) if later else None)
        metrics = {"forgetting": {"special": {f"baseline_min_within_{horizon}_steps": spread(values)}}}
        out.append(g.model_copy(update={"metrics": metrics}))
    return out


def judge(reports: dict[str, AuditReport], tau: float = 0.5) -> list[Claim]:
    """Every claim whose recipe's report is in `reports` (recipe name -> AuditReport)."""
    claims = []
    sizes = reports.get("forgetting-sizes")
    if sizes is not None:
        by_size = _groups(sizes)
        claims.append(_ordered(Claim("larger models memorize faster (T(N, tau) falls with N)", "forgetting-sizes",
                                     f"memorization_series T_step_interp@{tau} [train]"), by_size,
                               ("memorization_series", "train", f"T_step_interp@{tau}"), rising=False))
        claims.append(_ordered(Claim("larger models memorize more before overfitting", "forgetting-sizes",
                                     "memorization_series M_before_overfit [train]"), by_size,
                               ("memorization_series", "train", "M_before_overfit"), rising=True))
        claims.append(_ordered(Claim("larger models forget less (forgetting baseline rises with size)",
                                     "forgetting-sizes", "forgetting baseline_min [special]"), by_size,
                               ("forgetting", "special", "baseline_min"), rising=True))
        claims.append(_ordered(Claim("... also above held-out text (baseline excess rises with size)",
                                     "forgetting-sizes", "forgetting baseline_excess [special]"), by_size,
                               ("forgetting", "special", "baseline_excess"), rising=True))
    if "forgetting-epochs" in reports:
        names = ["epoch-4", "epoch-8", "epoch-12"]
        claims.append(_no_effect(Claim("the baseline does not depend on the injection epoch", "forgetting-epochs",
                                       "forgetting baseline_min [special] (over the rest of training)"),
                                 _groups(reports["forgetting-epochs"], names), ("forgetting", "special", "baseline_min")))
        common = _horizon_baselines(reports["forgetting-epochs"], names)
        metric = next(iter(common[0].metrics["forgetting"]["special"])) if common else "baseline_min_within"
        claims.append(_no_effect(Claim("... compared over the same number of steps after injection", "forgetting-epochs",
                                       f"forgetting {metric} [special]"), common, ("forgetting", "special", metric)))
    if "forgetting-repeats" in reports:
        claims.append(_ordered(Claim("repeating the special batch raises the baseline", "forgetting-repeats",
                                     "forgetting baseline_min [special]"),
                               _groups(reports["forgetting-repeats"], ["r1", "r2", "r4"]),
                               ("forgetting", "special", "baseline_min"), rising=True))
    if "forgetting-spacing" in reports:
        claims.append(_no_effect(Claim("the spacing of repetitions matters little", "forgetting-spacing",
                                       "forgetting baseline_min [special]"),
                                 _groups(reports["forgetting-spacing"], ["spacing-2", "spacing-6"]),
                                 ("forgetting", "special", "baseline_min")))
    ids = reports.get("unique-ids")
    if ids is not None:
        where = ("unique_ids_series", "train", f"gain_T_step_interp@{tau}")
        claims.append(_gain(Claim("unique identifiers speed memorization (ID run vs baseline)", "unique-ids",
                                  f"unique_ids_series gain_T_step_interp@{tau} [train], steps"),
                            [g for g in _groups(ids) if g.name.endswith("-ids")], where))
        claims.append(_gain(Claim("a larger vocabulary alone helps (control vs baseline)", "unique-ids",
                                  f"unique_ids_series gain_T_step_interp@{tau} [train], steps"),
                            [g for g in _groups(ids) if g.name.endswith("-control")], where))
    pairs = reports.get("perturbation")
    if pairs is not None:
        groups = {g.name: g for g in _groups(pairs)}
        if "perturbed" in groups:
            claims.append(_dose(Claim("memorization rises with duplication (gain over the twin)", "perturbation",
                                      "twin gain [perturb[dup=L]], nats/token"), groups["perturbed"], [0, 1, 4, 16, 64]))
            for metric, what in (("rougeL_f1", "ROUGE-L F1 of greedy continuations"),
                                 ("approx", "approximate memorization, BLEU > 0.75")):
                if any(v is not None for v in _values(groups["perturbed"], "twin", "perturb[dup=64]", metric)):
                    claims.append(_dose(Claim(f"what the model writes copies more with duplication ({what})",
                                              "perturbation", f"twin {metric} [perturb[dup=L]]"),
                                        groups["perturbed"], [0, 1, 4, 16, 64], metric))
            claims.append(_paired_metrics(Claim("the reference-model attack separates inserted from held-out samples "
                                                "better than the loss attack", "perturbation",
                                                "twin auc_reference vs auc_loss [perturb[dup=4]]"),
                                          groups["perturbed"], "perturb[dup=4]", "auc_reference", "auc_loss"))
        where = ("twin", "perturb[dup=16]", "gain")
        if {"perturbed", "perturbed-small"} <= groups.keys():
            claims.append(_ordered(Claim("the same duplication in a larger corpus is memorized less (dilution)",
                                         "perturbation", "twin gain [perturb[dup=16]]"),
                                   [groups["perturbed"], groups["perturbed-small"]], where, rising=True))
        if {"perturbed-early", "perturbed-late"} <= groups.keys():
            claims.append(_ordered(Claim("insertions early in training are forgotten by the end, relative to late ones "
                                         "(ordering)", "perturbation", "twin gain [perturb[dup=16]] at the end"),
                                   [groups["perturbed-early"], groups["perturbed-late"]], where, rising=True))
    profiles = reports.get("profiles")
    if profiles is not None:
        by_size = _groups(profiles)
        where = ("memorization_profile", "train", "instantaneous")
        claims.append(_gain(Claim("training on a sample raises its log-likelihood at once (instantaneous "
                                  "memorization > 0 at every size)", "profiles",
                                  "memorization_profile instantaneous [train]"), by_size, where))
        claims.append(_pretrend(Claim("no effect before training (placebo effects jointly 0: the design holds)",
                                      "profiles", "memorization_profile pretrend_event_p [train]"), by_size))
        claims.append(_ordered(Claim("larger models memorize more at once (instantaneous rises with size)", "profiles",
                                     "memorization_profile instantaneous [train]"), by_size, where, rising=True))
        claims.append(_ordered(Claim("... and keep more of it (residual memorization rises with size)", "profiles",
                                     "memorization_profile residual [train]"), by_size,
                               ("memorization_profile", "train", "residual"), rising=True))
    return claims


def claims_table(claims: list[Claim]) -> str:
    """The claims as a Markdown table: values (mean ± sd over seeds), comparisons (difference, t) and verdict."""

    def number(x) -> str:
        return "–" if x is None else f"{x:.3g}"

    lines = ["| claim | recipe · metric | mean ± sd over seeds | comparisons (a − b, t vs critical) | verdict |",
             "|---|---|---|---|---|"]
    for c in claims:
        values = "; ".join(f"{g}: {number(v['mean'])} ± {number(v['std'])}" + ("" if v["n"] == len(v["values"])
                           else f" (n={v['n']})") for g, v in c.values.items())
        comparisons = "; ".join(f"{x['a']} − {x['b']}: {number(x['difference'])}, t {number(x['t'])} vs "
                                f"{number(x['t_critical'])} → {x['verdict']}" for x in c.comparisons)
        verdict = c.verdict + (f" ({c.note})" if c.note else "")
        lines.append(f"| {c.claim} | {c.recipe} · {c.metric} | {values} | {comparisons} | {verdict} |")
    return "\n".join(lines)
