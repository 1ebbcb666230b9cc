"""Thresholds from `checkpoints.yaml` -> pass/fail results, and the gate against a baseline report."""

from __future__ import annotations

import re

from memaudit.errors import ConfigError, did_you_mean
from memaudit.names import AGGREGATES, group_parent
from memaudit.results.schema import (
    AuditReport,
    CheckResult,
    Comparison,
    SeriesResult,
    is_finite,
    is_number,
    metric_template,
)
from memaudit.results.values import ALL, shown


def split_metric(metric: str) -> tuple[str, str]:
    """`probe.metric` -> (probe, metric); the metric part may itself hold dots (`T_step@0.9`)."""
    probe, _, name = metric.partition(".")
    return probe, name


def _rules(config) -> list[tuple[str, object]]:
    """Every check and regression rule of the yaml, with how an error names it."""
    return ([(f"checks[{i}] ({c.display_name})", c) for i, c in enumerate(config.checks)]
            + [(f"regressions[{i}] ({r.metric})", r) for i, r in enumerate(config.regressions)])


def _grouped(datasets) -> dict[str, str]:
    """Data set name -> its group_by field, for the data sets that have one."""
    return {d.name: d.group_by for d in datasets if d.group_by is not None}


def validate_checks(config, probes, selected_by_keyword: bool = False) -> None:
    """Fail before anything loads when a check or regression rule names an unknown probe, metric, data
    set or series (checkpoint names are checked once the series are resolved: `validate_check_targets`)."""
    by_name = {p.name: p for p in probes}
    dataset_names = [d.name for d in config.datasets]
    series_names = [s.display_name for s in config.series]
    grouped = _grouped(config.datasets)
    for where, rule in _rules(config):
        probe_name, metric = split_metric(rule.metric)
        if not metric:
            raise ConfigError(f"{where}: metric '{rule.metric}' must be written probe.metric, e.g. memorization.M.")
        series = getattr(rule, "series", None)
        if series is not None and series not in series_names:
            raise ConfigError(f"{where}: no series '{series}' in the yaml.{did_you_mean(series, series_names)} "
                              f"Series: {', '.join(series_names)}.")
        whole = probe_name in by_name and not by_name[probe_name].per_dataset
        if whole and rule.dataset not in (None, ALL):
            raise ConfigError(f"{where}: probe '{probe_name}' compares data sets with each other (its parameters say "
                              f"which), so its metrics are under 'dataset: {ALL}', not '{rule.dataset}'.")
        if not whole and rule.dataset is None and len(dataset_names) > 1:
            raise ConfigError(f"{where}: say which data set it is about ('dataset: ...', one of "
                              f"{', '.join(dataset_names)}).")
        if not whole and rule.dataset is not None and rule.dataset not in dataset_names \
                and group_parent(rule.dataset, grouped) is None:  # a group's value is checked once data is read
            hint = f" ('{ALL}' is for probes that compare data sets, such as membership)" if rule.dataset == ALL else ""
            raise ConfigError(f"{where}: no data set '{rule.dataset}'.{did_you_mean(rule.dataset, dataset_names)} "
                              f"Data sets: {', '.join(dataset_names)}{hint}.")
        if probe_name not in by_name:
            if selected_by_keyword:
                continue  # deselected by -k: evaluated as not available, like pytest's deselection
            raise ConfigError(f"{where}: no probe '{probe_name}' is collected.{did_you_mean(probe_name, by_name)} "
                              f"Probes: {', '.join(by_name)}.")
        p = by_name[probe_name]
        valid = list(p.names(p.params, {q.name: q.params for q in probes})) if p.names else None
        if valid is not None and metric not in valid:  # the names it computes with these parameters decide
            shown = ", ".join(valid[:12]) + (f", ... ({len(valid)} in all)" if len(valid) > 12 else "")
            raise ConfigError(f"{where}: probe '{probe_name}' does not compute '{metric}' with its parameters."
                              f"{did_you_mean(metric, valid)} It computes: {shown}. Change the check, or the "
                              f"probe's parameters under 'probes: {probe_name}:'.")
        if valid is None and p.metrics and not _declared(metric, p.metrics):
            raise ConfigError(f"{where}: probe '{probe_name}' reports no metric '{metric}'."
                              f"{did_you_mean(metric, p.metrics)} Its metrics: {', '.join(p.metrics)}.")
        _check_applies(where, rule, p, metric, config, grouped)


def _check_applies(where: str, rule, p, metric: str, config, grouped: dict[str, str]) -> None:
    """Refuse a check or rule that names a metric the probe computes but that could never give a number where it
    points: a curve or text, `at` on a whole-series metric, a group or series the series probe does not report on."""
    if _not_a_number(metric, p):
        numbers = [m for m in p.metrics if m not in p.not_numbers]
        raise ConfigError(f"{where}: '{p.name}.{metric}' is not a number (a curve, a table or text), so no bound "
                          f"applies to it. Numbers of '{p.name}': {', '.join(numbers)}.")
    if p.kind != "series":
        records = {d.name for d in config.datasets if d.samples == "records"}
        named = rule.dataset if rule.dataset in records else group_parent(rule.dataset or "", grouped)
        if named in records and "lengths" not in p.wants:
            raise ConfigError(f"{where}: data set '{named}' is read as whole records ('samples: records', samples of "
                              f"varied length), which probe '{p.name}' does not read (it assumes samples of seq_len "
                              "tokens), so the check could never have a value. Check a probe that reads whole records "
                              "(memorization, perplexity), or give the data set fixed-length samples.")
        return
    if rule.at != "last":
        raise ConfigError(f"{where}: '{p.name}.{metric}' is computed once for the whole series (probe '{p.name}' runs "
                          f"after every checkpoint), so 'at: {rule.at}' cannot pick a checkpoint of it: remove 'at'.")
    parent = group_parent(rule.dataset or "", grouped)
    if parent is not None and not p.per_group:
        raise ConfigError(f"{where}: probe '{p.name}' reports on data sets, not on the groups of group_by: name the "
                          f"data set '{parent}', or check a per-checkpoint probe's metric of the group.")
    if p.for_series is None or not hasattr(rule, "series"):  # a regression rule: compared where the probe reports
        return
    reporting = [s.display_name for s in config.series if p.for_series(s)]
    if rule.series not in reporting and (rule.series is not None or len(reporting) < len(config.series)):
        raise ConfigError(f"{where}: probe '{p.name}' reports only for series {', '.join(reporting) or '(none)'}, so "
                          f"the check could never have a value for {rule.series or 'every series'}: add 'series: "
                          f"{reporting[0] if reporting else '...'}' to it.")


def _not_a_number(metric: str, p) -> bool:
    """Whether a probe declares `metric` as a curve, table or text (exactly, or by a template such as `M_<role>`
    that no metric of its declared numbers is named by)."""
    if not p.not_numbers or metric in p.metrics and metric not in p.not_numbers:
        return False
    return _declared(metric, p.not_numbers)


def validate_check_groups(config, series: str, groups: list[str]) -> None:
    """Once a series' data is read: a check or rule naming a group of group_by (`train[dup=4]`) must name one the
    data of every series it applies to has (`groups`: this series' group names), or it could never be computed."""
    grouped = _grouped(config.datasets)
    for where, rule in _rules(config):
        parent = group_parent(rule.dataset or "", grouped)
        if parent is None or rule.dataset in groups or getattr(rule, "series", None) not in (None, series):
            continue
        have = [g for g in groups if group_parent(g, grouped) == parent]
        raise ConfigError(f"{where}: the data of series '{series}' has no group '{rule.dataset}'."
                          f"{did_you_mean(rule.dataset, have)} Its groups: {', '.join(have[:12]) or '(none)'}"
                          f"{', ...' if len(have) > 12 else ''}.")


def _declared(metric: str, declared) -> bool:
    """Whether a probe declares `metric`: by name, with a threshold (`T_step@tau`), or by a template with
    placeholders (`rate[<scheme>][k=<k>,m=<m>]`)."""
    if metric in declared or metric_template(metric) in declared:
        return True
    return any(re.fullmatch(re.sub(r"<[^>]+>", ".+", re.escape(d)), metric) for d in declared if "<" in d)


def validate_check_targets(config, checkpoints: dict[str, list[str]]) -> None:
    """A check or rule whose `at` names a checkpoint must name one of every series it applies to
    (`checkpoints`: series name -> checkpoint names), or it could only ever fail."""
    for where, rule in _rules(config):
        if rule.at in AGGREGATES:
            continue
        for series, names in checkpoints.items():
            if getattr(rule, "series", None) in (None, series) and rule.at not in names:
                raise ConfigError(f"{where}: 'at: {rule.at}' is no checkpoint of series '{series}'."
                                  f"{did_you_mean(rule.at, names)} Use each, last, first, max, min, mean or one of "
                                  f"{', '.join(names[:8])}{', ...' if len(names) > 8 else ''}"
                                  f"{'' if getattr(rule, 'series', None) else ' (or limit the check to one series)'}.")


def evaluate_checks(checks: list, series: list[SeriesResult], probes, datasets: list) -> list[CheckResult]:
    """One result per check (the yaml's CheckConfig) and series (per checkpoint too, for `at: each`); `datasets`:
    the yaml's DatasetConfig."""
    kinds = {p.name: p.kind for p in probes}
    whole = {p.name for p in probes if not p.per_dataset}
    only_dataset = datasets[0].name if len(datasets) == 1 else None
    out = []
    for check in checks:
        probe_name, metric = split_metric(check.metric)
        if probe_name not in kinds:
            continue  # its probe was deselected (-k): not run, not failed
        dataset = ALL if probe_name in whole else check.dataset or only_dataset
        for s in series:
            if check.series is not None and check.series != s.name:
                continue
            if kinds.get(probe_name) == "series":
                value = s.metric(probe_name, dataset, metric)
                out.append(_result(check, s.name, dataset, None, value))
                continue
            for checkpoint, value in _pick(check.at, _values(s, probe_name, dataset, metric)):
                out.append(_result(check, s.name, dataset, checkpoint, value))
    return out


def _pick(at: str, values: list[tuple[str, object]]) -> list[tuple[str | None, object]]:
    if not values:
        return [(None, None)]
    if at == "each":
        return values
    if at in ("first", "last"):
        return [values[0] if at == "first" else values[-1]]
    if at in AGGREGATES:  # max, min, mean over the series
        numbers = [v for _, v in values if is_number(v)]
        if not numbers:
            return [(None, None)]
        return [(None, {"max": max, "min": min, "mean": lambda xs: sum(xs) / len(xs)}[at](numbers))]
    named = [(n, v) for n, v in values if n == at]
    return named or [(at, None)]


def _result(check, series: str, dataset, checkpoint, value) -> CheckResult:
    where = f"{series}" + (f"/{checkpoint}" if checkpoint else f" ({check.at})") + (f" [{dataset}]" if dataset else "")
    result = dict(name=check.display_name, metric=check.metric, dataset=dataset, series=series,
                  checkpoint=checkpoint, min=check.min, max=check.max)
    if not is_number(value):
        return CheckResult(**result, value=None, passed=False,
                           message=f"{check.metric} is not available for {where}")
    if not is_finite(value):  # NaN compares false with every bound: it must fail, not pass
        return CheckResult(**result, value=None, passed=False,
                           message=f"{check.metric} is {value} at {where}, which no bound can hold")
    low = check.min is not None and value < check.min
    high = check.max is not None and value > check.max
    if low or high:
        bound = f"< min {check.min}" if low else f"> max {check.max}"
        message = f"{check.metric} = {value:.4g} {bound} at {where}"
    else:
        message = f"{check.metric} = {value:.4g} within bounds at {where}"
    return CheckResult(**result, value=float(value), passed=not (low or high), message=message)


def compare_to_baseline(series: list[SeriesResult], baseline: AuditReport, rules, default_tolerance: float,
                        probes) -> tuple[list[CheckResult], Comparison]:
    """Checks of drift against a saved report (`--compare`), and what was and was not compared.

    With `rules` (the yaml's `regressions:`), each names a metric, data set, checkpoint (`at`) and the
    largest allowed rise and/or fall; without, every number a checkpoint probe shows is compared at the last
    checkpoint (this run's last against the baseline's last, whatever their names) and may move by at most
    `default_tolerance` either way. `at: each` and a checkpoint name compare the same checkpoint. A baseline
    series, data set, metric or checkpoint with no counterpart here, a NaN on either side, or nothing
    compared at all is a failed check: a gate must not pass by comparing nothing.
    """
    selected = {p.name for p in probes}
    explicit = [r if isinstance(r, dict) else r.model_dump() for r in rules]
    rules = explicit or _default_rules(series, baseline, probes, default_tolerance)
    gate = _Gate({p.name: p.kind for p in probes})
    now = {s.name: s for s in series}
    for old in (old for old in baseline.series if old.name not in now):
        gate.fail(old.name, f"series '{old.name}' of the baseline is not in this run (renamed or dropped?): "
                            f"nothing of it was compared. Name it as before, or save a new baseline "
                            f"(--save-baseline)")
    for rule in rules:
        before = (gate.compared, len(gate.checks))
        for old in baseline.series:
            if old.name in now:
                gate.rule(rule, now[old.name], old)
        if explicit and (gate.compared, len(gate.checks)) == before and split_metric(rule["metric"])[0] in selected:
            gate.fail(None, f"the rule on {rule['metric']} [{rule['dataset']}] @{rule['at']} compared nothing: neither "
                            "this run nor the baseline has a number for it in any series. Name a metric, data set "
                            "(or group) and checkpoint the audit reports", rule)
    known = {s.name for s in baseline.series}
    gate.new += [f"series '{name}': not in the baseline" for name in now if name not in known]
    gate.not_compared += sorted({f"probe '{p.name}' of the baseline was not run (deselected)"
                                 for p in baseline.probes if p.kind == "checkpoint" and p.name not in selected})
    if gate.compared == 0:
        gate.fail(None, "nothing was compared with the baseline" + (f" ({'; '.join(gate.not_compared[:3])})"
                                                                    if gate.not_compared else "")
                  + ". Compare a report of the same series, data sets and probes, or save a new baseline")
    return gate.checks, Comparison(baseline=f"config hash {baseline.provenance.config_hash}, made "
                                            f"{baseline.provenance.started_at}", compared=gate.compared,
                                   not_compared=gate.not_compared, new=gate.new)


def _default_rules(series: list[SeriesResult], baseline: AuditReport, probes, tolerance: float) -> list[dict]:
    """Every metric a selected checkpoint probe shows, at the last checkpoint, on every data set it ran on here
    or in the baseline, ±tolerance."""
    rules = []
    for p in (p for p in probes if p.kind == "checkpoint"):
        results = [(d, r) for s in [*series, *baseline.series] for c in s.checkpoints
                   for d, r in c.results.get(p.name, {}).items()]
        datasets = sorted({d for d, _ in results})
        rules += [{"metric": f"{p.name}.{m}", "dataset": d, "at": "last", "max_increase": tolerance,
                   "max_decrease": tolerance}
                  for m in shown(p.show, [k for _, r in results for k in r])  # templates: every pair, scheme
                  for d in datasets]
    return rules


class _Gate:
    """Collects the comparison's checks, its count and what it could not compare."""

    def __init__(self, kinds: dict[str, str]):
        self.kinds = kinds  # probe name -> checkpoint or series
        self.checks: list[CheckResult] = []
        self.compared = 0
        self.not_compared: list[str] = []
        self.new: list[str] = []

    def fail(self, series: str | None, message: str, rule: dict | None = None, checkpoint: str | None = None,
             baseline_checkpoint: str | None = None) -> None:
        """A failed check for something the gate should have compared and could not."""
        self.not_compared.append(message)
        self.checks.append(CheckResult(name=_rule_name(rule) if rule else "baseline", metric=rule["metric"] if rule else "baseline",
                                       dataset=rule["dataset"] if rule else None, series=series or "–",
                                       checkpoint=checkpoint, value=None, min=None, max=None, passed=False,
                                       message=message, baseline_checkpoint=baseline_checkpoint))

    def rule(self, rule: dict, now: SeriesResult, old: SeriesResult) -> None:
        """Compare one rule's values of one series with the baseline's."""
        probe_name, metric = split_metric(rule["metric"])
        what = f"{rule['metric']} [{rule['dataset']}] of series '{now.name}'"
        if self.kinds.get(probe_name) == "series":  # one value for the whole series (validated: at is last)
            if now.results.get(probe_name) or old.results.get(probe_name):  # {}: the probe does not report for it
                self.value(rule, now.name, None, now.metric(probe_name, rule["dataset"], metric), None,
                           old.metric(probe_name, rule["dataset"], metric))
            return
        pairs, missing, added = _pairs(rule["at"], _values(now, probe_name, rule["dataset"], metric),
                                       _values(old, probe_name, rule["dataset"], metric))
        for name in missing:
            self.fail(now.name, f"{what} at {name}: the baseline's checkpoint is not in this run", rule,
                      baseline_checkpoint=name)
        self.new += [f"{what} at {name}: not in the baseline" for name in added]
        for checkpoint, value, base_checkpoint, before in pairs:
            self.value(rule, now.name, checkpoint, value, base_checkpoint, before)

    def value(self, rule: dict, series: str, checkpoint, value, base_checkpoint, before) -> None:
        where = (f"{series}/{checkpoint or rule['at']} [{rule['dataset']}]"
                 + (f" (baseline: {base_checkpoint})" if base_checkpoint != checkpoint else ""))
        if not is_number(before) and not is_number(value):
            return  # not available in either run, or not a number (a curve, a mapping): nothing to compare
        if not is_number(before):
            self.new.append(f"{rule['metric']} at {where}: no value in the baseline")
            return
        if not is_number(value):
            self.fail(series, f"{rule['metric']} at {where} has a value in the baseline ({before:.4g}) but none "
                              f"in this run", rule, checkpoint, base_checkpoint)
            return
        if not (is_finite(value) and is_finite(before)):
            self.fail(series, f"{rule['metric']} at {where} cannot be compared: {before} in the baseline, {value} "
                              f"now (NaN or infinite)", rule, checkpoint, base_checkpoint)
            return
        self.compared += 1
        delta = value - before
        up, down = rule.get("max_increase"), rule.get("max_decrease")
        bad = (up is not None and delta > up) or (down is not None and -delta > down)
        message = (f"{rule['metric']} moved {delta:+.4g} ({before:.4g} -> {value:.4g}) at {where}; allowed "
                   f"+{up if up is not None else 'any'} / -{down if down is not None else 'any'}")
        self.checks.append(CheckResult(name=_rule_name(rule),
                                       metric=rule["metric"], dataset=rule["dataset"], series=series,
                                       checkpoint=checkpoint, value=float(delta),
                                       min=-down if down is not None else None, max=up, passed=not bad,
                                       message=message, baseline_checkpoint=base_checkpoint))


def _rule_name(rule: dict) -> str:
    """The name of a comparison's check: `baseline memorization.M[train]@last`."""
    return f"baseline {rule['metric']}[{rule['dataset']}]@{rule['at']}"


def _pairs(at: str, now: list, then: list):
    """(this run's checkpoint, value, the baseline's checkpoint, value) to compare for `at`; the baseline's
    checkpoints with no counterpart here; this run's with none in the baseline. first/last pair the
    series' ends whatever their names (a series that grew compares its new last checkpoint); each and a
    checkpoint name pair equal names; aggregates pair the aggregates."""
    if at in ("first", "last", "max", "min", "mean"):
        (name, value), = _pick(at, now)
        (base, before), = _pick(at, then)
        if not then and now:
            return [], [], [f"{at} (the baseline audited no checkpoint)"]
        return [(name, value, base, before)], [], []
    if at == "each":
        old = dict(then)
        here = dict(now)
        return ([(n, v, n, old[n]) for n, v in now if n in old], [n for n, _ in then if n not in here],
                [n for n, _ in now if n not in old])
    old = dict(then)
    if at not in old:
        return [], [at], []
    return [(at, dict(now).get(at), at, old[at])], [], []


def _values(series: SeriesResult, probe_name: str, dataset: str, metric: str):
    """(checkpoint name, value) of a per-checkpoint metric over the checkpoints that were audited."""
    return [(c.name, c.metric(probe_name, dataset, metric))
            for c in series.checkpoints if c.error is None]
