"""Output media: every file a report can be written as, in one registry that the command line, the Python API and
the pytest plugin read alike (`memaudit run --html PATH`, `memaudit.audit(..., outputs={"html": PATH})`,
`pytest --memaudit CONFIG --memaudit-html PATH`).

A medium is a name (the option `--<name>`), the file suffix it is usually given, the commands that offer it, and its
writer, `(report, path) -> None`, a pure function of a saved report named as "module:function" and imported only
when that medium is written (so `memaudit --help` imports none of them). A writer that needs more than the report
names it in `takes` (HTML: `makers`, the probes' figure functions, which the caller collects: a renderer imports no
probe); the caller passes to `write_all` how to make it, made only when a medium asked for takes it. Adding a medium is a module with its writer and one entry in
MEDIA.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Medium:
    """One way to write a report to a file."""

    name: str
    suffix: str
    help: str
    writer: str  # "module:function", (report, path, **takes) -> None
    commands: tuple[str, ...] = ("run", "show")  # where the command line offers --<name> PATH
    takes: tuple[str, ...] = ()  # keyword arguments the writer takes from the caller (see write_all)

    @property
    def option(self) -> str:
        return f"--{self.name}"

    @property
    def dest(self) -> str:
        return self.name.replace("-", "_")

    def write(self, report, path, **context) -> None:
        """Write `report` to `path` as this medium (atomically, as every writer does), with the items of `context`
        it `takes`."""
        module, _, function = self.writer.partition(":")
        getattr(importlib.import_module(module), function)(report, Path(path),
                                                           **{k: v for k, v in context.items() if k in self.takes})


MEDIA: dict[str, Medium] = {m.name: m for m in [
    Medium("json", ".json", "write the JSON report here (atomically)", "memaudit.results.schema:write_report",
           ("run",)),
    Medium("junit-xml", ".xml", "write the checks as JUnit XML test cases", "memaudit.report.junit:write_junit",
           ("run",)),
    Medium("html", ".html", "write a self-contained HTML report with figures", "memaudit.report.html:write_html",
           takes=("makers",)),
    Medium("csv", ".csv", "write every metric as a CSV table, one row per series, checkpoint, probe, data set and "
           "metric", "memaudit.report.csv_tables:write_metrics_csv", ("show",)),
    Medium("samples-csv", ".csv", "write every sample's values as CSV, one row per sample (from the report's "
           "per_sample tables, or the --samples-out files it names)", "memaudit.report.csv_tables:write_samples_csv",
           ("show",)),
]}
"""Every medium, by name."""


def offered(command: str) -> list[Medium]:
    """The media a command offers, in the registry's order."""
    return [m for m in MEDIA.values() if command in m.commands]


def medium(name: str) -> Medium:
    """The medium of this name; a ConfigError naming the others when there is none."""
    from memaudit.errors import ConfigError, did_you_mean

    if name not in MEDIA:
        raise ConfigError(f"No output medium '{name}'.{did_you_mean(name, list(MEDIA))} Media: {', '.join(MEDIA)}.")
    return MEDIA[name]


def write_all(report, outputs: dict[str, str | Path | None], **sources) -> None:
    """Write the report as each medium named in `outputs` (medium name -> path; None: not asked for). `sources`:
    how to make what writers may take, each a function of no arguments called once, when a medium asked for takes
    it (`makers`: the (probe name, figure function) pairs of memaudit.engine.registry.figure_makers)."""
    asked = {name: path for name, path in outputs.items() if path}
    wanted = {key for name in asked for key in medium(name).takes}
    context = {key: make() for key, make in sources.items() if key in wanted}
    for name, path in asked.items():
        medium(name).write(report, path, **context)
