"""Terminal report: pure functions of an AuditReport (a saved report renders like a live one)."""

from __future__ import annotations

from typing import Iterable

from rich.console import Console, Group, RenderableType
from rich.measure import Measurement
from rich.rule import Rule
from rich.table import Table
from rich.text import Text

from memaudit.results.schema import (
    AuditReport,
    ProbeInfo,
    SeriesResult,
    is_finite,
    is_number,
    metric_template,
)
from memaudit.results.values import shown

SPARKS = "▁▂▃▄▅▆▇█"


def make_console(stderr: bool = False, width: int | None = None) -> Console:
    """A rich console that prints names as data: no markup (`[red]`, `[/i]`), no emoji codes (`:x:`); with
    `NO_COLOR` set, no colour."""
    import os

    return Console(stderr=stderr, markup=False, emoji=False, width=width,
                   no_color=bool(os.environ.get("NO_COLOR")) or None)


def terminal_safe(report: AuditReport) -> AuditReport:
    """The report with control characters in every string (names, messages, dict keys) made visible
    (memaudit.report.escape.visible); the report itself when none holds one."""
    from memaudit.report.escape import escaped_report, visible

    return escaped_report(report, visible)


def sparkline(values: Iterable, width: int | None = None) -> str:
    """One character per value (at most `width`, evenly thinned), scaled between the smallest and
    largest finite number; gaps for None, `!` for NaN or infinity."""
    values = list(values)
    if width and len(values) > width:
        values = [values[round(i * (len(values) - 1) / (width - 1))] for i in range(width)]
    numbers = [v for v in values if is_finite(v)]
    if not numbers:
        return ""
    low, high = min(numbers), max(numbers)
    span = (high - low) or 1.0
    return "".join(SPARKS[round((v - low) / span * (len(SPARKS) - 1))] if is_finite(v) else
                   ("!" if is_number(v) else " ") for v in values)  # !: NaN or infinite


def fmt(value, spark_width: int | None = None) -> str:
    """A metric value for a table cell."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value.is_integer() and abs(value) >= 2:
            return f"{value:,.0f}"
        if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
            return f"{value:.3g}"
        return f"{value:.3f}" if abs(value) < 100 else f"{value:.1f}"
    if isinstance(value, list):
        if value and all(isinstance(v, str) for v in value):
            return " › ".join(value)
        return sparkline(value, spark_width)
    return str(value)


def fmt_params(n: int | None) -> str:
    """1234567 -> '1.23M'."""
    if not n:
        return "?"
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.3g}{unit}"
    return str(n)


def header(report: AuditReport) -> RenderableType:
    """The pytest-like header: versions, settings, what was collected."""
    p = report.provenance
    n_ckpt = sum(len(s.checkpoints) for s in report.series)
    lines = [
        Rule("memaudit audit", style="bold"),
        Text(f"memaudit {p.memaudit_version} · torch {p.torch_version} · transformers {p.transformers_version} · "
             f"python {p.python_version} · device {p.device} · {p.dtype} · batch {p.batch_size}"),
        Text(f"config: {p.config_path or '-'} (hash {p.config_hash})"
             + (f" · POS tags: {p.tagger}" if p.tagger else "")),
        Text(f"collected {len(report.probes)} probes ({', '.join(x.name for x in report.probes)}) · "
             f"{len(report.series)} series · {n_ckpt} checkpoints · {len(report.datasets)} data sets "
             f"({', '.join(f'{d.name}: {_dataset_shape(d)} {d.role}' for d in report.datasets)})"),
    ]
    notes = [f"{d.name}: {d.records.n_longer} of {d.n_samples} records longer than the window of {d.seq_len} tokens "
             f"({'scored in rolling windows' if d.records.longer == 'rolling' else f'cut: {d.records.n_cut_tokens:,} tokens not scored'})"
             + (f"; not read by {', '.join(d.records.not_read_by)} (they assume samples of seq_len tokens)"
                if d.records.not_read_by else "")
             for d in report.datasets if d.records is not None and d.group_of is None]
    return Group(*lines, *(Text(note) for note in notes))


def _dataset_shape(d) -> str:
    """`512×64` (samples × tokens), or for whole records `30 records of 13-392 tokens`."""
    if d.records is None:
        return f"{d.n_samples}×{d.seq_len}"
    return f"{d.n_samples} records of {d.records.min_tokens}-{d.records.max_tokens} tokens"


MATRIX_COLUMNS = 12
TABLE_ROWS = 10


def _thin(items: list, most: int) -> list:
    """At most `most` items, evenly spaced, first and last kept."""
    if len(items) <= most:
        return items
    return [items[i] for i in sorted({round(k * (len(items) - 1) / (most - 1)) for k in range(most)})]


def _dict_metrics(series: SeriesResult, probe: ProbeInfo) -> list[str]:
    """Shown metrics whose values are mappings (e.g. R per tag): rendered as matrices."""
    results = [r for c in series.checkpoints for r in c.results.get(probe.name, {}).values()]
    return [m for m in probe.show if any(isinstance(r.get(m), dict) for r in results)]


def _table_metrics(series: SeriesResult, probe: ProbeInfo) -> list[str]:
    """The probe's shown scalar metrics (all of them when it shows none)."""
    keys = _scalar_keys(r for c in series.checkpoints for r in c.results.get(probe.name, {}).values())
    metrics = shown(probe.show, keys) if probe.show else keys
    return [m for m in metrics if m not in _dict_metrics(series, probe)]


def checkpoint_table(series: SeriesResult, probe: ProbeInfo, datasets: list[str]) -> Table | None:
    """Checkpoints as rows; the probe's shown scalar metrics per data set as columns."""
    ckpts = [c for c in series.checkpoints if probe.name in c.results]
    metrics = _table_metrics(series, probe)
    if not metrics or not datasets:
        return None
    shown_ckpts = _thin(ckpts, TABLE_ROWS)
    thinned = f"{len(shown_ckpts)} of {len(ckpts)} checkpoints" if len(shown_ckpts) < len(ckpts) else None
    table = Table(title=f"{probe.name} · {series.name} ({fmt_params(series.n_params)} params)",
                  title_justify="left", caption=thinned, caption_justify="left")
    table.add_column("checkpoint", no_wrap=True)
    table.add_column("step", justify="right")
    columns = [(d, m) for d in datasets for m in metrics]
    for d, m in columns:
        table.add_column(f"{d}\n{m}", justify="right")
    for c in shown_ckpts:
        cells = [fmt(c.results[probe.name].get(d, {}).get(m)) for d, m in columns]
        table.add_row(c.name + (" ⟲" if c.from_cache else ""), fmt(c.step), *cells)
    return table


def metrics_table(series: SeriesResult, probe: ProbeInfo, dataset: str) -> Table | None:
    """One data set's shown metrics as rows and the checkpoints (thinned to MATRIX_COLUMNS) as columns: for a
    probe with more metrics than a terminal's width holds side by side."""
    ckpts = _thin([c for c in series.checkpoints if c.results.get(probe.name, {}).get(dataset)], MATRIX_COLUMNS)
    metrics = _table_metrics(series, probe)
    if not metrics or not ckpts:
        return None
    table = Table(title=f"{probe.name} · {series.name} ({fmt_params(series.n_params)} params) · {dataset}",
                  title_justify="left")
    table.add_column("metric", no_wrap=True)
    for c in ckpts:
        table.add_column(c.name + (" ⟲" if c.from_cache else ""), justify="right")
    for m in metrics:
        table.add_row(m, *(fmt(c.results[probe.name][dataset].get(m)) for c in ckpts))
    return table


def _fits(console: Console, table: Table) -> bool:
    """Whether the table fits the console's width without squeezing a column below its longest word."""
    return Measurement.get(console, console.options.update_width(1 << 20), table).minimum <= console.width


def matrix_table(series: SeriesResult, probe: ProbeInfo, dataset: str, metric: str) -> Table:
    """A mapping metric (e.g. R per POS tag) over checkpoints: keys as rows, checkpoints as columns,
    each cell coloured from red (0) to green (1). Long series are thinned to MATRIX_COLUMNS columns."""
    ckpts = _thin([c for c in series.checkpoints if probe.name in c.results], MATRIX_COLUMNS)
    cells = [_mapping(c.results[probe.name].get(dataset, {}).get(metric)) for c in ckpts]  # one mapping per column
    rows = list(dict.fromkeys(k for mapping in cells for k in mapping))
    thinned = " (every few checkpoints)" if len(ckpts) < len(series.checkpoints) else ""
    table = Table(title=f"{probe.name} {metric} · {series.name} · {dataset}{thinned}", title_justify="left")
    table.add_column("", overflow="fold")  # long names wrap, never cut to look alike
    for c in ckpts:
        table.add_column(str(c.step) if c.step is not None else c.name, justify="right")
    scale = max([1.0] + [float(m.get(k)) for m in cells for k in rows if is_finite(m.get(k))])  # colours: 0..1 or max
    for key in rows:
        table.add_row(str(key), *[Text(fmt(m.get(key)), style=_heat(m[key] / scale)) if is_finite(m.get(key))
                                  else Text(fmt(m.get(key))) for m in cells])
    return table


def _mapping(value) -> dict:
    """A metric that should be a mapping, or {} when a report holds something else there."""
    return value if isinstance(value, dict) else {}


def _heat(v: float) -> str:
    v = min(max(float(v), 0.0), 1.0)
    red, green = int(255 * min(1.0, 2 * (1 - v))), int(255 * min(1.0, 2 * v))
    return f"rgb({red},{green},60)"


def trend_table(series: SeriesResult, probe: ProbeInfo, datasets: list[str]) -> Table | None:
    """One sparkline per shown metric and data set over the checkpoints, with first and last values."""
    ckpts = [c for c in series.checkpoints if probe.name in c.results]
    if len(ckpts) < 2:
        return None
    table = Table(box=None, show_header=False, padding=(0, 1), title_justify="left")
    table.add_column(style="dim", no_wrap=True)
    table.add_column(no_wrap=True)
    table.add_column(justify="right", no_wrap=True)
    keys = _scalar_keys(r for c in ckpts for r in c.results[probe.name].values())
    for d in datasets:
        for m in shown(probe.show, keys):
            values = [c.results[probe.name].get(d, {}).get(m) for c in ckpts]
            if any(is_number(v) for v in values):
                table.add_row(f"trend {d} {m}", sparkline(values), f"{fmt(values[0])} → {fmt(values[-1])}")
    return table


def series_table(report: AuditReport, probe: ProbeInfo) -> Table | None:
    """A series probe across series, sizes side by side: one column per (series, data set),
    one row per metric (lists become sparklines)."""
    columns = [(s, d, r) for s in report.series for d, r in s.results.get(probe.name, {}).items() if r]
    keys = _scalar_keys((r for _, _, r in columns), lists=True)
    if not columns:
        return None
    if probe.show:
        keys = [k for k in keys if k in probe.show or metric_template(k) in probe.show]
    table = Table(title=probe.name, title_justify="left")
    table.add_column("", overflow="fold")  # long names wrap, never cut to look alike
    for s, d, _ in columns:
        table.add_column(f"{s.name}\n{d}", justify="right")
    table.add_row("params", *[fmt_params(s.n_params) for s, _, _ in columns])
    for k in keys:
        subkeys = list(dict.fromkeys(sk for _, _, r in columns if isinstance(r.get(k), dict) for sk in r[k]))
        if subkeys:
            for sk in subkeys:
                table.add_row(f"{k} {sk}", *[fmt(_mapping(r.get(k)).get(sk)) for _, _, r in columns])
        else:
            table.add_row(k, *[fmt(r.get(k), spark_width=10) for _, _, r in columns])
    return table


def replicates_table(report: AuditReport, probe: ProbeInfo) -> Table | None:
    """A series probe's shown metrics as mean ± standard deviation over the seeds of each replicate group
    (one column per group and data set), with the number of seeds that had a value."""
    columns = [(g, d, m) for g in report.replicates for d, m in g.metrics.get(probe.name, {}).items() if m]
    if not columns:
        return None
    keys = list(dict.fromkeys(k for _, _, m in columns for k in m))
    if probe.show:
        keys = [k for k in keys if metric_template(k.split("[")[0]) in probe.show or k.split("[")[0] in probe.show]
    if not keys:
        return None
    table = Table(title=f"{probe.name} · over seeds (mean ± sd, n)", title_justify="left")
    table.add_column("", overflow="fold")  # long names wrap, never cut to look alike
    for g, d, _ in columns:
        table.add_column(f"{g.name} ×{len(g.seeds)}\n{d}", justify="right")
    table.add_row("params", *[fmt_params(g.n_params) for g, _, _ in columns])
    for k in keys:
        table.add_row(k, *[spread_cell(m.get(k)) for _, _, m in columns])
    return table


def spread_cell(s) -> str:
    """`mean ± sd`, with `(n=k)` when some seeds had no value."""
    if s is None or s.mean is None:
        return "–"
    text = fmt(s.mean) if s.std is None else f"{fmt(s.mean)} ± {fmt(s.std)}"
    return text if s.n == len(s.values) else f"{text} (n={s.n})"


def _scalar_keys(results: Iterable[dict], lists: bool = False) -> list[str]:
    keys: dict[str, None] = {}
    for r in results:
        for k, v in r.items():
            if is_number(v) or v is None or isinstance(v, str) or (lists and isinstance(v, (list, dict))):
                keys.setdefault(k)
    return list(keys)


def checks_table(report: AuditReport) -> Table:
    """Every check with its value, bounds and verdict."""
    table = Table(title="checks", title_justify="left")
    for col in ("", "check", "series", "checkpoint", "value", "min", "max"):
        table.add_column(col, justify="right" if col in ("value", "min", "max") else "left")
    for c in report.checks:
        mark = Text("PASS", style="green") if c.passed else Text("FAIL", style="bold red")
        table.add_row(mark, c.name, c.series, c.checkpoint or "–", fmt(c.value), fmt(c.min), fmt(c.max))
    return table


LISTED = 8


def comparison_lines(report: AuditReport) -> list[tuple[str, list[str]]]:
    """What `--compare` compared, as (headline, items) blocks: the count, what was not compared, what is new
    (at most LISTED items each, then how many more)."""
    c = report.comparison
    if c is None:
        return []

    def listed(items: list[str]) -> list[str]:
        return items[:LISTED] + ([f"... and {len(items) - LISTED} more (see the JSON report)"]
                                 if len(items) > LISTED else [])

    blocks = [(f"compared {c.compared} value{'s' if c.compared != 1 else ''} with the baseline ({c.baseline})", [])]
    if c.not_compared:
        blocks.append((f"not compared ({len(c.not_compared)}):", listed(c.not_compared)))
    if c.new:
        blocks.append((f"new in this run, not in the baseline ({len(c.new)}):", listed(c.new)))
    return blocks


def comparison_block(report: AuditReport) -> RenderableType | None:
    """The comparison with the baseline, in the terminal."""
    blocks = comparison_lines(report)
    if not blocks:
        return None
    lines = []
    for headline, items in blocks:
        lines.append(Text(headline, style="bold"))
        lines += [Text(f"  {item}") for item in items]
    return Group(*lines)


def summary_line(report: AuditReport) -> Rule:
    """`3 passed, 1 failed in 12.4s` (pytest's closing line)."""
    counts = report.counts
    parts = ["no checks"] if not report.checks else []
    parts += [f"{counts[word]} {word}" for word in ("passed", "failed") if counts[word]]
    if counts["errors"]:
        parts.append(f"{counts['errors']} error" + ("s" if counts["errors"] > 1 else ""))
    if report.status == "interrupted":
        parts.append("interrupted")
    if report.unwritten:
        parts.append(f"{len(report.unwritten)} output(s) not written")
    seconds = report.provenance.duration_s or 0.0
    style = {"passed": "green", "failed": "red", "interrupted": "yellow", "error": "red"}[report.status]
    return Rule(f"{', '.join(parts)} in {seconds:.1f}s", style=f"bold {style}")


def render_report(report: AuditReport, console: Console, quiet: bool = False) -> None:
    """Print the whole report (with `quiet`, only failed checks, unwritten outputs and the summary line). Names
    are printed as data: give a console from `make_console` (no markup); control characters show as escapes."""
    report = terminal_safe(report)
    if quiet:
        for c in report.checks:
            if not c.passed:
                console.print(Text(f"FAIL {c.message}", style="red"))
        _unwritten(report, console)
        console.print(summary_line(report))
        return
    console.print(header(report))
    datasets = [d.name for d in report.datasets]
    for series in report.series:
        for probe in report.probes:
            if probe.kind == "checkpoint" and any(probe.name in c.results for c in series.checkpoints):
                present = {d for c in series.checkpoints for d, r in c.results.get(probe.name, {}).items() if r}
                shown = [d for d in datasets if d in present] + sorted(present - set(datasets))
                table = checkpoint_table(series, probe, shown)
                if table is not None:
                    for part in [table] if _fits(console, table) else _per_dataset(console, series, probe, shown):
                        if part is not None:
                            console.print(part)
                    trends = trend_table(series, probe, shown)
                    if trends is not None and trends.row_count:
                        console.print(trends)
                train = [d.name for d in report.datasets if d.role == "train" and d.name in shown] or shown
                for metric in _dict_metrics(series, probe):
                    for d in train:
                        if any(isinstance(c.results.get(probe.name, {}).get(d, {}).get(metric), dict)
                               for c in series.checkpoints):
                            console.print(matrix_table(series, probe, d, metric))
        for c in series.checkpoints:
            if c.error:
                console.print(Text(f"ERROR {series.name}/{c.name}: {c.error}", style="red"))
    for probe in report.probes:
        if probe.kind == "series" and any(probe.name in s.results for s in report.series):
            table = series_table(report, probe)
            if table is not None:
                console.print(table)
            spread = replicates_table(report, probe)
            if spread is not None:
                console.print(spread)
    if report.checks:
        console.print(checks_table(report))
    compared = comparison_block(report)
    if compared is not None:
        console.print(compared)
    cached = sum(c.from_cache for s in report.series for c in s.checkpoints)
    if cached:
        console.print(Text(f"⟲ {cached} checkpoint(s) answered from the products cache (no forward pass)",
                           style="dim"))
    _unwritten(report, console)
    console.print(summary_line(report))


def _per_dataset(console: Console, series: SeriesResult, probe: ProbeInfo, datasets: list[str]) -> list:
    """A checkpoint table per data set, or where even that is too wide, the data set's metrics as rows."""
    tables = [checkpoint_table(series, probe, [d]) for d in datasets]
    return [t if t is None or _fits(console, t) else metrics_table(series, probe, d) for d, t in zip(datasets, tables)]


def _unwritten(report: AuditReport, console: Console) -> None:
    for line in report.unwritten:
        console.print(Text(f"NOT WRITTEN {line}", style="bold red"))
