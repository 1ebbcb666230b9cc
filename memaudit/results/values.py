"""What a metric value is: a number, a finite one, a per-sample table; flat names of nested metrics.

Below the report's schema and its tables (both read it), importable with nothing but the standard library.
"""

from __future__ import annotations

import math
import re
from typing import Any

from memaudit.names import ALL  # noqa: F401  (re-exported: the data set name of whole-run metrics)


def is_number(value) -> bool:
    """A metric value that is a number (not a bool, None, string or mapping)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_finite(value) -> bool:
    """A number that is neither NaN nor infinite, and an integer that a float can hold (a report written by
    another tool may hold 10**400)."""
    if isinstance(value, int):
        return is_number(value) and abs(value) <= 2**1023
    return isinstance(value, float) and math.isfinite(value)


def is_table(value) -> bool:
    """A probe's per-sample table: a non-empty mapping of equal-length lists (columns)."""
    return (isinstance(value, dict) and bool(value) and all(isinstance(v, list) for v in value.values())
            and len({len(v) for v in value.values()}) == 1)


def flat_metrics(metrics: dict) -> dict[str, Any]:
    """A probe's metrics one level flat: each value as it is, a mapping's entries as `metric[key]` (a metric
    that is itself named like that wins)."""
    flat = dict(metrics)
    for name, value in metrics.items():
        if isinstance(value, dict):
            del flat[name]
            for key, v in value.items():
                flat.setdefault(f"{name}[{key}]", v)
    return flat


def metric_template(name: str) -> str:
    """`T_step@0.9` -> `T_step@tau`: the name a probe declares for a metric with a threshold in it."""
    return re.sub(r"@[0-9.]+$", "@tau", name)


def shown(show, keys) -> list[str]:
    """The metric names among `keys` that a probe's `show` list names, in its order: a name, a threshold
    template (`T_step@tau`), or a template with placeholders (`greedy_rate[k=<k>,m=<m>]` matches every pair)."""
    keys = list(dict.fromkeys(keys))
    out: list[str] = []
    for entry in show:
        if "<" in entry:
            pattern = re.compile(re.sub(r"<[^>]+>", ".+?", re.escape(entry)))  # re.escape leaves < and > as they are
            out += [k for k in keys if pattern.fullmatch(k)]
        else:
            out += [k for k in keys if k == entry or metric_template(k) == entry] or [entry]
    return list(dict.fromkeys(out))
