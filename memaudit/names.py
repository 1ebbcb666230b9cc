"""Names memaudit makes from data, in one place: the whole-run data set name and the names of group_by groups.

Standard library only: the config, the engine, the results and the renderers all import it. A user's data set name
never reads as a group's name (`split_group_name` finds none in it) and is never `all` (inputs/config.py refuses
both), so no generated name below can equal a user's: every `group_name` reads as one.
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


def split_group_name(name: str) -> tuple[str, str, str] | None:
    """(data set, field, label) of a group's name, or None for a data set's own name (which has no `[`)."""
    dataset, bracket, rest = name.partition("[")
    if not bracket or not rest.endswith("]") or "=" not in rest:
        return None
    field, _, label = rest[:-1].partition("=")
    return dataset, field, label
