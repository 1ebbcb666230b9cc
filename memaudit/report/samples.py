"""The per-sample schema: one row per sample of a data set at a checkpoint, the same columns wherever per-sample
values go (`--samples-out` Parquet, `AuditReport.samples_frame()`, `memaudit show --samples-csv`).

Declared once, like the catalog of products (memaudit.engine.catalog): KEY_COLUMNS say where a row belongs,
PROBE_COLUMNS name and document each probe quantity. Names need no quoting in pandas' `query`, SQL or DuckDB
(`memorization_M`, `membership_min_k_pp_score`, `extraction_risk_log10_pz__T1_0__k32_m32`). One sign
convention: a loss is the mean negative log-likelihood in nats (positive); a membership score is higher for
samples that look like members and is named `..._score` (`membership_loss_score` = -`memorization_loss`).
Numbers are float64 (int64 for counts and steps, bool for verdicts). A column of a probe this table does not
know is `<probe>_<column>`, described as such. `memaudit schema --samples` prints the table.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class SampleColumn:
    """One column of the per-sample schema."""

    name: str
    type: str  # string, int64, float64 or bool (int64 columns are nullable)
    meaning: str


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

_SCORES = {"loss": "mean log-likelihood of the sample's tokens (= -loss; higher: more member-like)",
           "zlib": "mean log-likelihood over zlib-compressed length (Carlini et al. 2021; higher: more member-like)",
           "min_k": "mean of the lowest k% token log-likelihoods (Min-K%; higher: more member-like)",
           "min_k_pp": "Min-K%++ score (Zhang et al. 2024; higher: more member-like)"}

PROBE_COLUMNS: dict[tuple[str, str], SampleColumn] = {
    ("memorization", "M"): SampleColumn("memorization_M", "float64",
                                        "share of the sample's target tokens whose teacher-forced argmax is the "
                                        "true token"),
    ("memorization", "loss"): SampleColumn("memorization_loss", "float64",
                                           "mean next-token negative log-likelihood, nats (positive)"),
    ("memorization", "extractable"): SampleColumn("memorization_extractable", "bool",
                                                  "greedy decoding from the first k tokens reproduces the next m"),
    ("memorization", "match_len"): SampleColumn("memorization_match_len", "int64",
                                                "tokens greedy decoding reproduces after the k-token prefix (<= m)"),
    ("memorization", "suffix_loss"): SampleColumn("memorization_suffix_loss", "float64",
                                                  "mean negative log-likelihood of the m tokens after the k-token "
                                                  "prefix, nats (positive)"),
    ("canaries", "log_perplexity"): SampleColumn("canaries_log_perplexity", "float64",
                                                 "a canary candidate's log-perplexity from the secret on (nats; "
                                                 "exposure ranks the inserted secret among the candidates by it)"),
    ("sample_outcomes", "mean_rank"): SampleColumn("sample_outcomes_mean_rank", "float64",
                                                   "mean rank of the sample's true tokens (1 = the argmax)"),
    ("sample_outcomes", "mean_entropy"): SampleColumn("sample_outcomes_mean_entropy", "float64",
                                                      "mean entropy of the next-token distributions (nats)"),
    **{(probe, score): SampleColumn(f"{probe}_{score}_score", "float64", f"{meaning} [{probe}]")
       for probe in ("membership", "unlearning_membership") for score, meaning in _SCORES.items()},
}
"""(probe, column of its rows function) -> the schema's column."""

PATTERNS = (
    (re.compile(r"extraction_risk_log10_pz__(.+)__k(\d+)_m(\d+)"),
     "log10 p_z: the chance that one continuation sampled under the scheme reproduces the m-token suffix after the "
     "k-token prefix (-inf: p_z is exactly 0, e.g. a token top-k excludes)"),
    (re.compile(r"extraction_risk_greedy__k(\d+)_m(\d+)"),
     "greedy decoding from the first k tokens reproduces the next m (the k-extractable verdict)"),
)
"""Columns whose names carry parameters, and what they hold."""


def column(probe: str, name: str) -> SampleColumn:
    """The schema's column for column `name` of probe `probe`'s rows function."""
    known = PROBE_COLUMNS.get((probe, name))
    if known is not None:
        return known
    full = f"{probe}_{name}"
    for pattern, meaning in PATTERNS:
        if pattern.fullmatch(full):
            return SampleColumn(full, "bool" if "greedy" in full else "float64", meaning)
    return SampleColumn(full, "float64", f"column '{name}' of probe '{probe}'s rows function")


def describe(name: str) -> str:
    """What a column of the schema holds (for the Parquet metadata and the docs)."""
    for c in (*KEY_COLUMNS, *PROBE_COLUMNS.values()):
        if c.name == name:
            return c.meaning
    for pattern, meaning in PATTERNS:
        if pattern.fullmatch(name):
            return meaning
    return "a probe's per-sample column"


def table_markdown() -> str:
    """The schema as a Markdown table (README, `memaudit schema --samples`)."""
    rows = [(c.name, c.type, c.meaning) for c in KEY_COLUMNS]
    rows += [("data_<field>", "int64, float64, bool or string", "the data's per-sample field named by a data set's "
              "group_by (its type: the field's values', the same in every data set and series of a run)")]
    rows += [(c.name, c.type, c.meaning) for c in PROBE_COLUMNS.values()]
    rows += [("extraction_risk_log10_pz__<scheme>__k<k>_m<m>", "float64", PATTERNS[0][1]),
             ("extraction_risk_greedy__k<k>_m<m>", "bool", PATTERNS[1][1]),
             ("<probe>_<column>", "float64", "a column of another probe's rows function")]
    return "\n".join(["| column | type | meaning |", "|---|---|---|", *(f"| `{n}` | {t} | {m} |" for n, t, m in rows)])
