"""One self-contained HTML file from a report: provenance, checks, the terminal tables and the
figures embedded as PNG data (no network needed to open it, no external URL in it)."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

from memaudit.report.schema import AuditReport

STYLE = """
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 2em auto; max-width: 1200px;
       color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table.kv td { padding: 2px 12px 2px 0; vertical-align: top; } table.kv td:first-child { color: #666; }
table.checks { border-collapse: collapse; } table.checks td, table.checks th { border: 1px solid #ddd;
       padding: 3px 8px; } .pass { color: #009E73; font-weight: bold; } .fail { color: #D55E00; font-weight: bold; }
pre.terminal { background: #111; color: #eee; padding: 1em; overflow-x: auto; font-size: 12px; line-height: 1.25; }
figure { margin: 1em 0; } img { max-width: 100%; border: 1px solid #eee; }
"""


def render_html(report: AuditReport, with_figures: bool = True) -> str:
    """The whole report as one HTML document."""
    from rich.console import Console

    from memaudit.report.render import render_report

    console = Console(record=True, width=150, file=io.StringIO(), color_system="truecolor", force_terminal=True)
    render_report(report, console)
    terminal = console.export_html(inline_styles=True, code_format="{code}")
    p = report.provenance
    counts = report.counts
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>memaudit report</title>"
             f"<style>{STYLE}</style></head><body>",
             f"<h1>memaudit report · {html.escape(report.status)} (exit {report.exit_code})</h1>",
             f"<p>{counts['passed']} checks passed, {counts['failed']} failed, {counts['errors']} checkpoint errors. "
             f"Training text is {'included' if getattr(report, 'text_included', False) else 'not included'}.</p>",
             "<h2 id='provenance'>Provenance</h2><table class='kv'>"]
    for key, value in p.model_dump().items():
        parts.append(f"<tr><td>{html.escape(key)}</td><td>{html.escape(str(value))}</td></tr>")
    parts.append("</table><h2 id='checks'>Checks</h2>")
    if report.checks:
        parts.append("<table class='checks'><tr><th></th><th>check</th><th>series</th><th>checkpoint</th>"
                     "<th>value</th><th>message</th></tr>")
        for c in report.checks:
            mark = "<span class='pass'>PASS</span>" if c.passed else "<span class='fail'>FAIL</span>"
            parts.append(f"<tr><td>{mark}</td><td>{html.escape(c.name)}</td><td>{html.escape(c.series)}</td>"
                         f"<td>{html.escape(c.checkpoint or '–')}</td><td>{'' if c.value is None else f'{c.value:.4g}'}"
                         f"</td><td>{html.escape(c.message)}</td></tr>")
        parts.append("</table>")
    else:
        parts.append("<p>No checks were configured.</p>")
    parts.append(f"<h2 id='tables'>Tables</h2><pre class='terminal'>{terminal}</pre>")
    if with_figures:
        from memaudit.report.plots import figures, png_bytes

        figs = figures(report)
        parts.append("<h2 id='figures'>Figures</h2>")
        if not figs:
            parts.append("<p>No figure: the report has no curve to draw.</p>")
        for name, fig in figs.items():
            data = base64.b64encode(png_bytes(fig)).decode()
            parts.append(f"<figure id='fig-{name}'><img alt='{name}' src='data:image/png;base64,{data}'>"
                         f"<figcaption>{name}</figcaption></figure>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_html(report: AuditReport, path: str | Path) -> None:
    """Write the HTML report atomically."""
    from memaudit.atomic import atomic_write_text

    atomic_write_text(Path(path), render_html(report))
