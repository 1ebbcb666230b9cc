"""The report as one self-contained web page, a pure function of the saved report.

Order: the verdict and the checks, then the figures (PNG data, each with what to look for), then one
sortable table per probe and data set (checkpoints as rows, the probe's shown metrics as columns, M-like
cells shaded), the series probes' tables, and the provenance last, collapsed. Light and dark colour
schemes follow the reader's system; the page prints to PDF; it needs no network and holds no external
URL; every string from the configuration or the data is escaped. Sorting by a column header is a few
lines of inline JavaScript: without JavaScript the tables read the same, unsorted.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

from memaudit.report.render import comparison_lines, fmt, spread_cell
from memaudit.results.schema import AuditReport, SeriesResult, flat_metrics, is_finite, is_number, metric_template
from memaudit.results.values import shown

STYLE = """
:root { color-scheme: light dark; --fg: #1d1d1f; --muted: #666; --bg: #fff; --line: #ddd; --head: #f4f4f6;
        --pass: #007a5a; --fail: #c0392b; --shade: 0, 114, 178; }
@media (prefers-color-scheme: dark) {
  :root { --fg: #e8e8ea; --muted: #aaa; --bg: #161618; --line: #3a3a3e; --head: #242428; --pass: #3fcf9a;
          --fail: #ff7b6b; --shade: 86, 180, 233; } }
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 2em auto; max-width: 1200px;
       padding: 0 1em; color: var(--fg); background: var(--bg); }
h1 { font-size: 1.6em; margin-bottom: .2em; } h2 { font-size: 1.25em; margin-top: 1.8em;
     border-bottom: 1px solid var(--line); } h3 { font-size: 1.05em; margin: 1.4em 0 .4em; }
.verdict { font-size: 1.1em; } .headline { font-size: 1.05em; }
nav { border: 1px solid var(--line); padding: .4em 1em; display: inline-block; } nav ol { margin: .2em 0; }
.badge { padding: 2px 10px; border-radius: 10px; color: #fff; }
.badge.passed { background: var(--pass); } .badge.failed, .badge.error, .badge.interrupted { background: var(--fail); }
.pass { color: var(--pass); font-weight: bold; } .fail { color: var(--fail); font-weight: bold; }
.muted, figcaption, caption { color: var(--muted); }
table { border-collapse: collapse; margin: .4em 0 1em; font-variant-numeric: tabular-nums; display: block;
        overflow-x: auto; max-width: 100%; }
td, th { border: 1px solid var(--line); padding: 3px 8px; } th { background: var(--head); text-align: left; }
td.num { text-align: right; } caption { text-align: left; caption-side: top; padding-bottom: 4px; }
table.sortable th { cursor: pointer; } table.sortable th[aria-sort]::after { content: " ▾"; }
table.sortable th[aria-sort=ascending]::after { content: " ▴"; }
figure { margin: 1em 0 2em; break-inside: avoid; } img { max-width: 100%; border: 1px solid var(--line);
         background: #fff; }
details summary { cursor: pointer; font-weight: bold; }
@media print { details { display: block; } details > * { display: block; } body { max-width: none; }
               h2 { break-after: avoid; } table { break-inside: auto; } tr { break-inside: avoid; } }
"""

SORT_SCRIPT = """
document.querySelectorAll('table.sortable th').forEach(function (th, _, all) {
  th.addEventListener('click', function () {
    var table = th.closest('table'), body = table.tBodies[0], i = Array.prototype.indexOf.call(th.parentNode.children, th);
    var up = th.getAttribute('aria-sort') !== 'ascending';
    th.parentNode.querySelectorAll('th').forEach(function (h) { h.removeAttribute('aria-sort'); });
    th.setAttribute('aria-sort', up ? 'ascending' : 'descending');
    var key = function (row) { var c = row.children[i]; var v = c.getAttribute('data-v');
      return v === null ? c.textContent : (v === '' ? NaN : parseFloat(v)); };
    Array.prototype.slice.call(body.rows).sort(function (a, b) {
      var x = key(a), y = key(b);
      if (typeof x === 'number' && typeof y === 'number') { if (isNaN(x)) return 1; if (isNaN(y)) return -1;
        return up ? x - y : y - x; }
      return up ? String(x).localeCompare(y) : String(y).localeCompare(x);
    }).forEach(function (row) { body.appendChild(row); });
  });
});
"""


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _shaded(metric: str) -> bool:
    """M-like metrics (shares of tokens or samples, between 0 and 1) get a shaded cell."""
    return metric.startswith(("M", "R", "sample_M", "rate", "greedy_rate", "extractable", "auc"))


def _cell(value, metric: str) -> str:
    if not is_number(value):
        return f"<td data-v=''>{_e(fmt(value))}</td>" if value is None else f"<td>{_e(fmt(value))}</td>"
    style = ""
    if _shaded(metric) and 0 <= value <= 1:
        style = f" style='background: rgba(var(--shade), {0.08 + 0.5 * value:.2f})'"
    return f"<td class='num' data-v='{float(value)!r}'{style}>{_e(fmt(value))}</td>"


def largest_risks(report: AuditReport) -> list[tuple[str, str, float]]:
    """(series, where, share) of training samples greedily extractable at each series' last audited
    checkpoint (memorization's `extractable` on data sets of role train), largest first."""
    train = [d.name for d in report.datasets if d.role == "train"]
    out = []
    for s in report.series:
        last = next((c for c in reversed(s.checkpoints) if c.error is None and "memorization" in c.results), None)
        for d in train if last is not None else ():
            value = last.metric("memorization", d, "extractable")
            if is_finite(value):
                out.append((s.name, f"{last.name} [{d}]", float(value)))
    return sorted(out, key=lambda r: -r[2])


def headline(report: AuditReport) -> str:
    """The largest risk the audit found, in one sentence, with every series' figure below it."""
    risks = largest_risks(report)
    if not risks:
        return ""
    series, where, share = risks[0]
    items = "".join(f"<li>{_e(s)}/{_e(w)}: {share:.1%}</li>" for s, w, share in risks)
    return (f"<p class='headline'>Largest risk found: <b>{share:.1%}</b> of the training samples are reproduced "
            f"verbatim by greedy decoding at <b>{_e(series)}/{_e(where)}</b> (k-extractable, at each series' last "
            f"checkpoint):</p><ul class='muted'>{items}</ul>")


SECTIONS = (("errors", "Checkpoints that could not be audited"), ("checks", "Checks"), ("figures", "Figures"),
            ("tables", "Per-checkpoint results"), ("series", "Series results"), ("replicates", "Over seeds"),
            ("provenance", "Provenance"))


def contents(page: str) -> str:
    """A table of contents of the sections the page has."""
    items = "".join(f"<li><a href='#{key}'>{title}</a></li>" for key, title in SECTIONS if f"id='{key}'" in page)
    return f"<nav><b>Contents</b><ol>{items}</ol></nav>"


def verdict(report: AuditReport) -> str:
    """Status, counts, the largest risk found and the checkpoints that could not be audited."""
    counts = report.counts
    out = [f"<h1>memaudit report</h1><p class='verdict'><span class='badge {_e(report.status)}'>"
           f"{_e(report.status)}</span> exit {report.exit_code} · {counts['passed']} checks passed, "
           f"{counts['failed']} failed, {counts['errors']} checkpoint errors · "
           f"{len(report.series)} series, {sum(len(s.checkpoints) for s in report.series)} checkpoints</p>",
           headline(report),
           f"<p class='muted'>Training text is {'included (redacted)' if report.text_included else 'not included'}."
           f" Made {_e(report.provenance.started_at)} by memaudit {_e(report.provenance.memaudit_version)}.</p>"]
    errors = [(s.name, c) for s in report.series for c in s.checkpoints if c.error]
    if errors:
        out.append("<h2 id='errors'>Checkpoints that could not be audited</h2><ul>")
        out += [f"<li><b>{_e(s)}/{_e(c.name)}</b>: {_e(c.error)}</li>" for s, c in errors]
        out.append("</ul>")
    return "\n".join(out)


def checks(report: AuditReport) -> str:
    """The checks table, failures first."""
    out = ["<h2 id='checks'>Checks</h2>"]
    if not report.checks:
        return out[0] + "<p class='muted'>No checks were configured.</p>"
    out.append("<table class='sortable'><thead><tr><th></th><th>check</th><th>series</th><th>checkpoint</th>"
               "<th>data set</th><th>value</th><th>min</th><th>max</th><th>message</th></tr></thead><tbody>")
    for c in sorted(report.checks, key=lambda c: c.passed):
        mark = "<span class='pass'>PASS</span>" if c.passed else "<span class='fail'>FAIL</span>"
        out.append(f"<tr><td>{mark}</td><td>{_e(c.name)}</td><td>{_e(c.series)}</td><td>{_e(c.checkpoint or '–')}</td>"
                   f"<td>{_e(c.dataset or '–')}</td>{_cell(c.value, '')}{_cell(c.min, '')}{_cell(c.max, '')}"
                   f"<td>{_e(c.message)}</td></tr>")
    out.append("</tbody></table>")
    for line, items in comparison_lines(report):
        out.append(f"<p>{_e(line)}</p>" + ("<ul>" + "".join(f"<li>{_e(i)}</li>" for i in items) + "</ul>"
                                               if items else ""))
    return "\n".join(out)


def figures_section(report: AuditReport, makers=()) -> str:
    """Every figure `memaudit plot` makes for this report, inline, with its caption (`makers`: the probes' figure
    functions, as memaudit.report.plots.figure_list takes them)."""
    from memaudit.report.plots import figure_list, png_bytes

    from memaudit.errors import ConfigError

    out = ["<h2 id='figures'>Figures</h2>"]
    try:
        made = figure_list(report, makers)
    except ConfigError as e:  # no matplotlib: the page without its figures, saying why
        return out[0] + f"<p class='muted'>No figures: {_e(e)}</p>"
    if not made:
        out.append("<p class='muted'>No figure: the report has no curve to draw.</p>")
    for name, fig, caption in made:
        data = base64.b64encode(png_bytes(fig)).decode()
        out.append(f"<figure id='fig-{_e(name)}'><img alt='{_e(name)}' src='data:image/png;base64,{data}'>"
                   f"<figcaption>{_e(caption)}</figcaption></figure>")
    return "\n".join(out)


def probe_tables(report: AuditReport) -> str:
    """One table per (per-checkpoint probe, data set) and series: rows are checkpoints, columns the shown
    scalar metrics."""
    out = ["<h2 id='tables'>Per-checkpoint results</h2>"]
    for probe in (p for p in report.probes if p.kind == "checkpoint"):
        for series in report.series:
            for dataset in _datasets(series, probe.name):
                out.append(_checkpoint_table(series, probe, dataset))
    return "\n".join(t for t in out if t)


def _datasets(series: SeriesResult, probe: str) -> list[str]:
    return list(dict.fromkeys(d for c in series.checkpoints for d, r in c.results.get(probe, {}).items() if r))


def _checkpoint_table(series: SeriesResult, probe, dataset: str) -> str:
    rows = [c for c in series.checkpoints if c.results.get(probe.name, {}).get(dataset)]
    values = [c.results[probe.name][dataset] for c in rows]
    keys = list(dict.fromkeys(k for v in values for k in v))
    metrics = [m for m in (shown(probe.show, keys) if probe.show else keys) if any(is_number(v.get(m)) for v in values)]
    if not metrics:
        return ""
    head = "".join(f"<th>{_e(m)}</th>" for m in metrics)
    out = [f"<table class='sortable' data-probe='{_e(probe.name)}' data-dataset='{_e(dataset)}'>"
           f"<caption><b>{_e(probe.name)}</b> · {_e(series.name)} · {_e(dataset)}</caption>"
           f"<thead><tr><th>checkpoint</th><th>step</th><th>tokens seen</th>{head}</tr></thead><tbody>"]
    for c, v in zip(rows, values):
        out.append(f"<tr><td>{_e(c.name)}</td>{_cell(c.step, '')}{_cell(c.tokens_seen, '')}"
                   + "".join(_cell(v.get(m), m) for m in metrics) + "</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def series_tables(report: AuditReport) -> str:
    """One table per series probe: a row per (series, data set), its shown metrics as columns."""
    out = ["<h2 id='series'>Series results</h2>"]
    for probe in (p for p in report.probes if p.kind == "series"):
        rows = [(s, d, flat_metrics(r)) for s in report.series for d, r in s.results.get(probe.name, {}).items() if r]
        keys = list(dict.fromkeys(k for _, _, r in rows for k in r))  # a mapping's entries as `metric[key]`
        if probe.show:
            keys = [k for k in keys if k in probe.show or metric_template(k) in probe.show
                    or k.split("[")[0] in probe.show]
        if not rows or not keys:
            continue
        out.append(_table_head(f"<b>{_e(probe.name)}</b>", ["series", "data set", *keys],
                               f" data-probe='{_e(probe.name)}'"))
        for s, d, r in rows:
            cells = "".join(_cell(r.get(k), k) if is_number(r.get(k)) or r.get(k) is None
                            else f"<td>{_e(_short(fmt(r.get(k), spark_width=12)))}</td>" for k in keys)
            out.append(f"<tr><td>{_e(s.name)}</td><td>{_e(d)}</td>{cells}</tr>")
        out.append("</tbody></table>")
    return "\n".join(out)


def replicate_tables(report: AuditReport) -> str:
    """Seed replicates: per series probe, a row per (group, data set) with each shown metric as mean ± sd (n)."""
    if not report.replicates:
        return ""
    out = ["<h2 id='replicates'>Over seeds</h2>"]
    for probe in (p for p in report.probes if p.kind == "series"):
        rows = [(g, d, m) for g in report.replicates for d, m in g.metrics.get(probe.name, {}).items() if m]
        keys = [k for k in dict.fromkeys(k for _, _, m in rows for k in m)
                if not probe.show or metric_template(k.split("[")[0]) in probe.show or k.split("[")[0] in probe.show]
        if not rows or not keys:
            continue
        out.append(_table_head(f"<b>{_e(probe.name)}</b> · mean ± sd over seeds (n)", ["group", "seeds", "data set", *keys]))
        for g, d, m in rows:
            cells = "".join(f"<td>{_e(spread_cell(m.get(k)))}</td>" for k in keys)
            out.append(f"<tr><td>{_e(g.name)}</td><td>{_e(', '.join(map(str, g.seeds)))}</td><td>{_e(d)}</td>{cells}</tr>")
        out.append("</tbody></table>")
    return "\n".join(out)


def _table_head(caption: str, columns: list[str], attributes: str = "") -> str:
    """The start of a sortable table: caption (HTML) and the escaped column names."""
    return (f"<table class='sortable'{attributes}><caption>{caption}</caption><thead><tr>"
            + "".join(f"<th>{_e(c)}</th>" for c in columns) + "</tr></thead><tbody>")


def _short(text: str, most: int = 120) -> str:
    return text if len(text) <= most else text[: most - 1] + "…"


def provenance(report: AuditReport) -> str:
    """Versions, settings and times, collapsed."""
    rows = "".join(f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>" for k, v in report.provenance.model_dump().items())
    return (f"<h2 id='provenance'>Provenance</h2><details><summary>versions, device, settings, times</summary>"
            f"<table>{rows}</table></details>")


def render_html(report: AuditReport, with_figures: bool = True, makers=()) -> str:
    """The whole report as one HTML document (with the figures of `makers`, the probes' figure functions)."""
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
             f"<meta name='viewport' content='width=device-width, initial-scale=1'>"
             f"<title>memaudit report · {_e(report.status)}</title><style>{STYLE}</style></head><body>",
             verdict(report), checks(report)]
    if with_figures:
        parts.append(figures_section(report, makers))
    parts += [probe_tables(report), series_tables(report), replicate_tables(report), provenance(report),
              f"<script>{SORT_SCRIPT}</script></body></html>"]
    parts.insert(2, contents("\n".join(parts)))
    return "\n".join(parts)


def write_html(report: AuditReport, path: str | Path, makers=()) -> None:
    """Write the HTML report atomically, with the figures of `makers` (the probes' figure functions)."""
    from memaudit.atomic import atomic_write_text

    atomic_write_text(Path(path), render_html(report, makers=makers))
