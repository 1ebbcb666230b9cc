"""Names memaudit makes from data, in one place: the whole-run data set name and the names of group_by groups.

Standard library only: the config, the engine, the results and the renderers all import it. A user's data set name
never reads as a group's name and is never `all` (inputs/config.py refuses both), so no generated name below can
equal a user's: every `group_name` reads as one. A data set's own name may hold brackets (`pile[deduped]`), so a
group's data set is found by matching the known data sets (`group_parent`), never by parsing the name.
"""

from __future__ import annotations

ALL = "all"
"""The data set name under which a probe that compares data sets (`per_dataset=False`) stores its metrics."""

AGGREGATES = ("each", "last", "first", "max", "min", "mean")
"""The `at:` of a check or rule that is not a checkpoint's name."""


def group_label(value) -> str:
    """A group value as it reads in a name: 4, 0.5, true, or the text (values are exact: see inputs/data.py)."""
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return "true" if value else "false"
    if isinstance(value, int) or type(value).__name__.startswith(("int", "uint")):
        return str(int(value))
    if isinstance(value, float) or type(value).__name__.startswith("float"):
        return repr(float(value))
    return str(value)


def group_name(dataset: str, field: str, value) -> str:
    """The name of a group of `dataset` by `field`: `train[dup=4]`."""
    return f"{dataset}[{field}={group_label(value)}]"


def reads_as_group(name: str) -> bool:
    """Whether a name has the form of a group's, `x[field=value]` (which a user's data set name may not have)."""
    _, bracket, rest = name.partition("[")
    return bool(bracket) and rest.endswith("]") and "=" in rest


def group_parent(name: str, grouped: dict[str, str]) -> str | None:
    """The data set that `name` is a group of, among `grouped` (data set -> its group_by field), or None: the
    longest data set name whose groups' prefix `name` carries."""
    found = [d for d, f in grouped.items() if name.startswith(f"{d}[{f}=") and name.endswith("]")]
    return max(found, key=len, default=None)


def column_slug(label: str) -> str:
    """A sampling scheme's label as part of a per-sample column name that needs no quoting: `T=1.0,top_k=40` ->
    `T1_0__top_k40` (`greedy` stays as it is)."""
    return label.replace("=", "").replace(".", "_").replace(",", "__")
