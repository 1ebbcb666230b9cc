"""The per-sample schema: one row per sample of a data set at a checkpoint, the same columns wherever per-sample
values go (`--samples-out` Parquet, `AuditReport.samples_frame()`, `memaudit show --samples-csv`).

KEY_COLUMNS say where a row belongs; then come the data's group_by field (`data_<field>`) and each probe's
columns, which the probe declares beside its rows function (`@probe(rows=..., columns={...})`, a `Column` per
column: type, meaning, unit, what a higher value says) and the report records (`ProbeInfo.columns`), so that
nothing here names a probe. A column is `<probe>_<name>`: names need no quoting in pandas' `query`, SQL or DuckDB
(`memorization_M`, `membership_min_k_pp_score`, `extraction_risk_log10_pz__T1_0__k32_m32`). One sign convention:
a loss is the mean negative log-likelihood in nats (positive); a membership score is higher for samples that look
like members and is named `..._score`. Numbers are float64 (int64 for counts and steps, bool for verdicts). A
column a probe does not declare keeps the type of its values and says it is undeclared. `memaudit schema
--samples` prints the table of the standard probes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Column:
    """A per-sample column a probe's rows function makes, declared with the probe: `@probe(rows=..., columns=
    {"M": Column("float64", "share of ...", unit="share", higher="more memorized")})`. A key may be a template
    with placeholders (`log10_pz__<scheme>__k<k>_m<m>`) for columns named after the probe's parameters."""

    type: Literal["float64", "int64", "bool", "string"]
    meaning: str
    unit: str = ""
    """What the values count or measure (nats, tokens, a share, log10 probability), when it helps."""
    higher: str = ""
    """What a higher value says about the sample: "more member-like", "more memorized", or nothing."""
    name: str | None = None
    """The schema's name after `<probe>_` (default: the rows function's own column name)."""


@dataclass(frozen=True)
class SampleColumn:
    """One column of the per-sample schema."""

    name: str
    type: str  # string, int64, float64 or bool (int64 columns are nullable)
    meaning: str
    unit: str = ""
    higher: str = ""


KEY_COLUMNS = (
    SampleColumn("series", "string", "series name (as in the report)"),
    SampleColumn("checkpoint", "string", "checkpoint name (revision or folder)"),
    SampleColumn("step", "int64", "training step of the checkpoint (null when its name carries none)"),
    SampleColumn("tokens_seen", "int64", "training tokens seen at the checkpoint, when known"),
    SampleColumn("dataset", "string", "data set name"),
    SampleColumn("sample_index", "int64", "position of the sample in its data set (after first_sample)"),
    SampleColumn("sample_id", "string", "the sample's id (`<data set>:<index>` unless the data gives ids)"),
    SampleColumn("seen_at_step", "int64", "training step at which the sample was seen, when the data says"),
)
"""Where a row belongs: every row carries them, so a folder of files read as one table keeps checkpoints apart."""

DTYPES = {"b": "bool", "i": "int64", "u": "int64", "f": "float64"}
"""numpy dtype kind -> the schema's type, for a column no probe declared."""


def probe_column(probe: str, key: str, declared: Mapping[str, Column] | None, kind: str | None = None) -> SampleColumn:
    """The schema's column for column `key` of probe `probe`'s rows function, from the probe's declared `columns`
    (exactly, or by a template); undeclared, it keeps its values' type (`kind`: their numpy dtype kind)."""
    found = _declaration(key, declared or {})
    if found is not None:
        return SampleColumn(f"{probe}_{found.name or key}", found.type, found.meaning, found.unit, found.higher)
    return SampleColumn(f"{probe}_{key}", DTYPES.get(kind or "f", "string"),
                        f"column '{key}' of probe '{probe}'s rows function (not declared by the probe)")


def _declaration(key: str, declared: Mapping[str, Column]) -> Column | None:
    if key in declared:
        return declared[key]
    for template, c in declared.items():
        if "<" in template and re.fullmatch(re.sub(r"<[^>]+>", ".+", re.escape(template)), key):
            return c
    return None


def table_markdown(declared: Mapping[str, Mapping[str, Column]]) -> str:
    """The schema as a Markdown table (`memaudit schema --samples`): the key columns, the data's fields, then the
    columns each probe declares (`declared`: probe name -> its columns)."""
    rows = [(c.name, c.type, c.meaning) for c in KEY_COLUMNS]
    rows += [("data_<field>", "int64, float64, bool or string", "the data's per-sample field named by a data set's "
              "group_by (its type: the field's values', the same in every data set and series of a run)")]
    for probe, columns in declared.items():
        for key, c in columns.items():
            meaning = c.meaning + (f" ({c.unit})" if c.unit else "") + (f"; higher: {c.higher}" if c.higher else "")
            rows.append((f"{probe}_{c.name or key}", c.type, meaning))
    rows += [("<probe>_<column>", "its values' type", "a column a probe's rows function makes but does not declare")]
    return "\n".join(["| column | type | meaning |", "|---|---|---|", *(f"| `{n}` | {t} | {m} |" for n, t, m in rows)])
