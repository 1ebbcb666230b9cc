"""pytest plugin: `pytest --memaudit checkpoints.yaml` turns each memaudit check into a pytest item.

The audit runs once, at collection, through the same engine (and products cache and journal) as
`memaudit run`; every check result becomes an item named `<check>[<series>/<checkpoint>]`, every
checkpoint that could not be audited an item that errors. pytest's own reporting, `-k`, `-x`,
`--junit-xml` and exit codes then apply. Registered through the `pytest11` entry point.
"""

from __future__ import annotations

import functools
from pathlib import Path

import pytest


def pytest_addoption(parser) -> None:
    group = parser.getgroup("memaudit", "memorization audits of checkpoint series")
    group.addoption("--memaudit", metavar="CONFIG", default=None,
                    help="run the memaudit checks of CONFIG (a checkpoints.yaml) as test items")
    from memaudit.report.media import offered

    for m in offered("run"):  # --memaudit-json, --memaudit-html, --memaudit-junit-xml (pytest has its own --junit-xml)
        group.addoption(f"--memaudit-{m.name}", metavar="PATH", default=None, dest=f"memaudit_{m.dest}",
                        help=f"also {m.help}")


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "memaudit: a memaudit check collected by --memaudit")
    path = config.getoption("memaudit")
    if not path:
        return
    if not Path(path).is_file():  # pytest would call a missing path a usage error (4); memaudit: bad config (2)
        from memaudit.errors import ExitCode

        pytest.exit(f"memaudit: No configuration file at '{path}'. Pass the path of a checkpoints.yaml to --memaudit.",
                    returncode=int(ExitCode.USAGE_ERROR))
    resolved = str(Path(path).resolve())
    explicit = config.args_source == pytest.Config.ArgsSource.ARGS
    if resolved not in [str(Path(a).resolve()) for a in config.args]:
        config.args = [*config.args, resolved] if explicit else [resolved]


def pytest_collect_file(file_path: Path, parent):
    configured = parent.config.getoption("memaudit")
    if configured and file_path.resolve() == Path(configured).resolve():
        return AuditFile.from_parent(parent, path=file_path)
    return None


class AuditFile(pytest.File):
    """The yaml: collecting it runs the audit and yields one item per check result."""

    def collect(self):
        from memaudit.engine.plan import RunOptions, make_plan
        from memaudit.engine.run import run_audit
        from memaudit.inputs.config import load_config

        config, digest = load_config(self.path)
        if self.config.option.collectonly:  # `--co`: list the items the audit would give, without running it
            yield from self._planned(config)
            return
        report = run_audit(make_plan(config), digest, RunOptions(config_path=str(self.path),
                                                                 command="pytest --memaudit"))
        from memaudit.engine.registry import figure_makers
        from memaudit.report.media import offered, write_all

        media = {m.name: self.config.getoption(f"memaudit_{m.dest}") for m in offered("run")}
        write_all(report, media, makers=functools.partial(figure_makers, config.probe_paths))
        from memaudit.report.render import terminal_safe

        report = terminal_safe(report)  # names reach pytest's terminal as data
        for series in report.series:
            for ckpt in series.checkpoints:
                if ckpt.error:
                    yield CheckpointErrorItem.from_parent(self, name=f"audit[{series.name}/{ckpt.name}]",
                                                          message=ckpt.error)
        for check in report.checks:
            where = f"{check.series}/{check.checkpoint}" if check.checkpoint else check.series
            yield CheckItem.from_parent(self, name=f"{check.name}[{where}]", result=check)

    def _planned(self, config):
        """One item per check and series (per checkpoint for `at: each`), named as the run would name them:
        the series are resolved (cheaply: no model loads), nothing is scored."""
        from memaudit.engine.plan import make_plan
        from memaudit.inputs.sources import resolve_series
        from memaudit.results.checks import split_metric, validate_check_targets

        plan = make_plan(config)
        kinds = {p.name: p.kind for p in plan.probes}
        names = {s.display_name: [c.name for c in resolve_series(s)] for s in config.series}
        validate_check_targets(config, names)
        for check in config.checks:
            series_probe = kinds.get(split_metric(check.metric)[0]) == "series"
            for series, checkpoints in names.items():
                if check.series not in (None, series):
                    continue
                if series_probe or check.at in ("max", "min", "mean") or not checkpoints:
                    where = [series]
                elif check.at == "each":
                    where = [f"{series}/{c}" for c in checkpoints]
                else:
                    at = {"first": checkpoints[0], "last": checkpoints[-1]}.get(check.at, check.at)
                    where = [f"{series}/{at}"]
                for w in where:
                    yield CheckItem.from_parent(self, name=f"{check.display_name}[{w}]", result=None)

    def repr_failure(self, excinfo):
        from memaudit.errors import MemauditError

        if isinstance(excinfo.value, MemauditError):
            from memaudit.report.escape import visible

            return f"memaudit: {visible(str(excinfo.value))}"
        return super().repr_failure(excinfo)



class ThresholdExceeded(AssertionError):
    """A memaudit check whose value lies outside its bounds."""


class CheckItem(pytest.Item):
    """One check on one series (and checkpoint)."""

    def __init__(self, *, result, **kwargs):
        super().__init__(**kwargs)
        self.result = result
        self.add_marker(pytest.mark.memaudit)

    def runtest(self) -> None:
        if not self.result.passed:
            raise ThresholdExceeded(self.result.message)

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, ThresholdExceeded):
            r = self.result
            return (f"{r.message}\n  metric {r.metric}, data set {r.dataset}, value {r.value}, "
                    f"min {r.min}, max {r.max}")
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return self.path, None, f"memaudit: {self.name}"


class CheckpointErrorItem(pytest.Item):
    """A checkpoint that could not be audited: reported as a pytest error-like failure."""

    def __init__(self, *, message: str, **kwargs):
        super().__init__(**kwargs)
        self.message = message

    def runtest(self) -> None:
        raise RuntimeError(self.message)

    def repr_failure(self, excinfo, style=None):
        return f"checkpoint could not be audited: {self.message}"

    def reportinfo(self):
        return self.path, None, f"memaudit: {self.name}"
