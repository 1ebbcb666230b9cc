"""Names are data: one escaping rule per output medium.

Series, data set, checkpoint and metric names come from users' yaml and from reports other people wrote.
Whatever they hold (rich markup such as `[/i]`, terminal escape sequences, `=formulas`, matplotlib's
`$math$`, characters XML cannot hold), every output shows them as themselves:

- terminal: rich prints with markup and emoji codes off (memaudit.report.render.make_console), and
  `visible` writes control characters as escapes (`\\x1b`), so no name can move the cursor, recolour,
  clear the screen or hide text;
- HTML: `html.escape` (memaudit.report.html);
- CSV: `csv_cell` keeps a cell from being read as a formula by a spreadsheet;
- XML (JUnit): `xml_text` escapes the characters XML 1.0 cannot hold; ElementTree escapes the rest;
- figures: the report the figure functions draw from has every string through `figure_text`, which escapes
  matplotlib's math text (`$` -> `\\$`) and control characters (matplotlib's own tick labels keep theirs).
"""

from __future__ import annotations

import re
from typing import Callable

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff]")
"""C0 and C1 controls (ESC among them), DEL, zero-width and bidirectional overrides, line separators."""
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")
"""Characters an XML 1.0 document cannot hold, even escaped."""
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
"""What makes a spreadsheet read a CSV cell as a formula (OWASP's CSV injection guidance)."""


def _escaped(match: re.Match) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(text: str) -> str:
    """`text` with every control, zero-width and direction-changing character written as an escape
    (`\\x1b`, `\\u202e`): what a terminal shows is what the name holds."""
    return _CONTROL.sub(_escaped, text)


def csv_cell(value):
    """A CSV cell that a spreadsheet shows as text: a string starting with =, +, -, @, tab or CR gets a
    leading apostrophe; numbers and other values are kept as they are."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def xml_text(text: str) -> str:
    """`text` with the characters XML 1.0 cannot hold written as escapes (ElementTree escapes <, > and &)."""
    return _NOT_XML.sub(_escaped, text)


def figure_text(text: str) -> str:
    """`text` for a matplotlib title, label or legend: `$` escaped (no math text) and controls visible."""
    return visible(text).replace("$", r"\$")


def escaped_report(report, escape: Callable[[str], str]):
    """`report` (an AuditReport) with `escape` applied to every string in it, dict keys too; the report
    itself when that changes nothing."""
    changed = False

    def walk(value):
        nonlocal changed
        if isinstance(value, str):
            out = escape(value)
            changed |= out != value
            return out
        if isinstance(value, dict):
            return {walk(k): walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        return value

    data = walk(report.model_dump())
    return type(report).model_validate(data) if changed else report
