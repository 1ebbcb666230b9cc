"""Thresholds from `checkpoints.yaml` -> pass/fail results."""

from __future__ import annotations

import re

from memaudit.errors import ConfigError, did_you_mean
from memaudit.inputs.config import AGGREGATES, CheckConfig, DatasetConfig
from memaudit.report.schema import CheckResult, SeriesResult, is_number, metric_template


def split_metric(metric: str) -> tuple[str, str]:
    """`probe.metric` -> (probe, metric); the metric part may itself hold dots (`T_step@0.9`)."""
    probe, _, name = metric.partition(".")
    return probe, name


def validate_checks(config, probes, selected_by_keyword: bool = False) -> None:
    """Fail before anything loads when a check or regression rule names an unknown probe, metric, data
    set or series (checkpoint names are checked once the series are resolved: `validate_check_targets`)."""
    by_name = {p.name: p for p in probes}
    dataset_names = [d.name for d in config.datasets]
    series_names = [s.display_name for s in config.series]
    rules = [(f"checks[{i}] ({c.display_name})", c) for i, c in enumerate(config.checks)]
    rules += [(f"regressions[{i}] ({r.metric})", r) for i, r in enumerate(config.regressions)]
    for where, rule in rules:
        probe_name, metric = split_metric(rule.metric)
        if not metric:
            raise ConfigError(f"{where}: metric '{rule.metric}' must be written probe.metric, e.g. memorization.M.")
        series = getattr(rule, "series", None)
        if series is not None and series not in series_names:
            raise ConfigError(f"{where}: no series '{series}' in the yaml.{did_you_mean(series, series_names)} "
                              f"Series: {', '.join(series_names)}.")
        if rule.dataset is None and len(dataset_names) > 1:
            raise ConfigError(f"{where}: say which data set it is about ('dataset: ...', one of "
                              f"{', '.join(dataset_names)}).")
        if rule.dataset is not None and rule.dataset not in dataset_names:
            raise ConfigError(f"{where}: no data set '{rule.dataset}'.{did_you_mean(rule.dataset, dataset_names)} "
                              f"Data sets: {', '.join(dataset_names)}.")
        if probe_name not in by_name:
            if selected_by_keyword:
                continue  # deselected by -k: evaluated as not available, like pytest's deselection
            raise ConfigError(f"{where}: no probe '{probe_name}' is collected.{did_you_mean(probe_name, by_name)} "
                              f"Probes: {', '.join(by_name)}.")
        declared = by_name[probe_name].metrics
        if declared and not _declared(metric, declared):
            raise ConfigError(f"{where}: probe '{probe_name}' reports no metric '{metric}'."
                              f"{did_you_mean(metric, declared)} Its metrics: {', '.join(declared)}.")


def _declared(metric: str, declared) -> bool:
    """Whether a probe declares `metric`: by name, with a threshold (`T_step@tau`), or by a template with
    placeholders (`rate[<scheme>][k=<k>,m=<m>]`)."""
    if metric in declared or metric_template(metric) in declared:
        return True
    return any(re.fullmatch(re.sub(r"<[^>]+>", ".+", re.escape(d)), metric) for d in declared if "<" in d)


def validate_check_targets(config, checkpoints: dict[str, list[str]]) -> None:
    """A check or rule whose `at` names a checkpoint must name one of every series it applies to
    (`checkpoints`: series name -> checkpoint names), or it could only ever fail."""
    rules = [(f"checks[{i}] ({c.display_name})", c) for i, c in enumerate(config.checks)]
    rules += [(f"regressions[{i}] ({r.metric})", r) for i, r in enumerate(config.regressions)]
    for where, rule in rules:
        if rule.at in AGGREGATES:
            continue
        for series, names in checkpoints.items():
            if getattr(rule, "series", None) in (None, series) and rule.at not in names:
                raise ConfigError(f"{where}: 'at: {rule.at}' is no checkpoint of series '{series}'."
                                  f"{did_you_mean(rule.at, names)} Use each, last, first, max, min, mean or one of "
                                  f"{', '.join(names[:8])}{', ...' if len(names) > 8 else ''}"
                                  f"{'' if getattr(rule, 'series', None) else ' (or limit the check to one series)'}.")


def evaluate_checks(checks: list[CheckConfig], series: list[SeriesResult], probes,
                    datasets: list[DatasetConfig]) -> list[CheckResult]:
    """One result per check and series (per checkpoint too, for `at: each`)."""
    kinds = {p.name: p.kind for p in probes}
    only_dataset = datasets[0].name if len(datasets) == 1 else None
    out = []
    for check in checks:
        probe_name, metric = split_metric(check.metric)
        if probe_name not in kinds:
            continue  # its probe was deselected (-k): not run, not failed
        dataset = check.dataset or only_dataset
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


def _result(check: CheckConfig, series: str, dataset, checkpoint, value) -> CheckResult:
    where = f"{series}" + (f"/{checkpoint}" if checkpoint else f" ({check.at})") + (f" [{dataset}]" if dataset else "")
    if not is_number(value):
        return CheckResult(name=check.display_name, metric=check.metric, dataset=dataset, series=series,
                           checkpoint=checkpoint, value=None, min=check.min, max=check.max, passed=False,
                           message=f"{check.metric} is not available for {where}")
    low = check.min is not None and value < check.min
    high = check.max is not None and value > check.max
    if low or high:
        bound = f"< min {check.min}" if low else f"> max {check.max}"
        message = f"{check.metric} = {value:.4g} {bound} at {where}"
    else:
        message = f"{check.metric} = {value:.4g} within bounds at {where}"
    return CheckResult(name=check.display_name, metric=check.metric, dataset=dataset, series=series,
                       checkpoint=checkpoint, value=float(value), min=check.min, max=check.max,
                       passed=not (low or high), message=message)


def compare_to_baseline(series: list[SeriesResult], baseline, rules, default_tolerance: float,
                        probes) -> list[CheckResult]:
    """Checks of drift against a saved report (`--compare`).

    With `rules` (the yaml's `regressions:`), each names a metric, data set, checkpoint (`at`) and the
    largest allowed rise and/or fall; without, every metric a probe shows is compared at the last
    checkpoint and may move by at most `default_tolerance` either way.
    """
    old = {s.name: s for s in baseline.series}
    if not rules:
        rules = [{"metric": f"{p.name}.{m}", "dataset": d, "at": "last", "max_increase": default_tolerance,
                  "max_decrease": default_tolerance}
                 for p in probes if p.kind == "checkpoint" for m in p.show
                 for d in sorted({d for s in series for c in s.checkpoints for d in c.results.get(p.name, {})})]
    out = []
    for rule in rules:
        rule = rule if isinstance(rule, dict) else rule.model_dump()
        probe_name, metric = split_metric(rule["metric"])
        for s in series:
            if s.name not in old:
                continue
            now = dict(_pick(rule["at"], _values(s, probe_name, rule["dataset"], metric)))
            then = dict(_pick(rule["at"], _values(old[s.name], probe_name, rule["dataset"], metric)))
            for checkpoint, value in now.items():
                before = then.get(checkpoint)
                name = f"baseline {rule['metric']}[{rule['dataset']}]@{rule['at']}"
                if not is_number(value) or not is_number(before):
                    continue  # a metric that is not a number (e.g. a mapping) is not compared
                delta = value - before
                up, down = rule.get("max_increase"), rule.get("max_decrease")
                bad = (up is not None and delta > up) or (down is not None and -delta > down)
                message = (f"{rule['metric']} moved {delta:+.4g} ({before:.4g} -> {value:.4g}) at {s.name}"
                           f"{'/' + checkpoint if checkpoint else ''} [{rule['dataset']}]; allowed "
                           f"+{up if up is not None else 'any'} / -{down if down is not None else 'any'}")
                out.append(CheckResult(name=name, metric=rule["metric"], dataset=rule["dataset"], series=s.name,
                                       checkpoint=checkpoint, value=float(delta),
                                       min=-down if down is not None else None, max=up, passed=not bad,
                                       message=message))
    return out


def _values(series: SeriesResult, probe_name: str, dataset: str, metric: str):
    """(checkpoint name, value) of a per-checkpoint metric over the checkpoints that were audited."""
    return [(c.name, c.metric(probe_name, dataset, metric))
            for c in series.checkpoints if c.error is None]
