"""Unique identifiers: do they make samples memorized faster? (Tirumala et al. 2022, sec. 7)

Two views:
- lab series trained as a baseline, a vocabulary-only control and an ID-prefixed run (`ids:` in
  the lab recipe): M over the targets all three runs share, T(N, tau) and the gain over the
  baseline of the same size;
- any series: samples that carry identifier-like content (memaudit.inputs.identifiers) against those
  that do not, and identifier tokens against the other tokens of the same samples.
"""

from __future__ import annotations

from typing import Annotated

import numpy as np
from pydantic import Field

from memaudit import probe, series_probe
from memaudit.measures import crossing_step, own_targets

Tau = Annotated[float, Field(ge=0, le=1)]


def _run_kind(ledger) -> str:
    kinds = {i.kind for i in ledger.interventions}
    return "ids" if "unique_ids" in kinds else "control" if "vocab_control" in kinds else "baseline"


@probe(metrics={"M_shared": "M over the targets every run shares: the ID run's first target (predicted "
                            "from the ID token alone) and the others' last target are left out",
                "run_kind": "baseline, control (vocabulary grown, unused) or ids (each sample starts with its ID)"},
       show=("M_shared",))
def unique_ids(hits, dataset, ledger):
    """M on a lab series' training samples, comparable across baseline, control and ID runs (only for
    labs that have an ID or control run)."""
    if ledger is None or dataset.role != "train":
        return {}
    if not any(r.get("ids", "none") != "none" for r in ledger.lab_runs or [ledger.run]):
        return {}
    kind = _run_kind(ledger)
    shared = hits[:, 1:] if kind == "ids" else hits[:, :-1]  # (samples, seq_len - 2): the same text tokens
    return {"M_shared": float(shared.mean()), "run_kind": kind}


def _first_step(checkpoints, probe_name, dataset, metric, tau):
    for c in checkpoints:
        v = c.metric(probe_name, dataset, metric)
        if v is not None and v >= tau:
            return c.step
    return None


def _curve(checkpoints, probe_name, dataset, metric) -> dict:
    return {c.step: c.metric(probe_name, dataset, metric) for c in checkpoints}


def _size(series) -> tuple | None:
    run = series.lab_run or {}
    return (run.get("layers"), run.get("width"), run.get("heads")) if run else None


@series_probe(not_numbers=("run_kind", "M_shared", "baseline"), metrics={"run_kind": "baseline, control or ids",
                       "M_shared": "M_shared at each checkpoint",
                       "T_step@tau": "first step with M_shared >= tau",
                       "T_step_interp@tau": "step at which M_shared crosses tau, interpolated between checkpoints",
                       "baseline": "the baseline series of the same size (and seed) compared against",
                       "gain_T_step@tau": "how many steps earlier than the baseline M_shared reaches tau",
                       "gain_T_step_interp@tau": "the same from the interpolated crossings",
                       "gain_M_mean": "mean over common checkpoints of M_shared minus the baseline's"},
              show=("run_kind", "M_shared", "T_step@tau", "baseline", "gain_T_step@tau", "gain_T_step_interp@tau",
                    "gain_M_mean"),
              uses=("unique_ids",))
def unique_ids_series(checkpoints, series, all_series, datasets, taus: list[Tau] = (0.5, 0.9)):
    """T(N, tau) per lab run and the gain of the control and the ID run over the same-size baseline."""
    out = {}
    for d in datasets:
        curve = _curve(checkpoints, "unique_ids", d.name, "M_shared")
        if not any(v is not None for v in curve.values()):
            continue
        kind = next(c.metric("unique_ids", d.name, "run_kind") for c in checkpoints
                    if c.metric("unique_ids", d.name, "run_kind"))
        base = next((s for s in all_series if _size(s) == _size(series) and (s.lab_run or {}).get("ids") == "none"
                     and (s.lab_run or {}).get("seed") == (series.lab_run or {}).get("seed")), None)
        row = {"run_kind": kind, "M_shared": list(curve.values()), "baseline": base.name if base else None}
        base_curve = _curve(base.checkpoints, "unique_ids", d.name, "M_shared") if base else {}
        for tau in taus:
            mine = _first_step(checkpoints, "unique_ids", d.name, "M_shared", tau)
            row[f"T_step@{tau}"] = mine
            theirs = _first_step(base.checkpoints, "unique_ids", d.name, "M_shared", tau) if base else None
            row[f"gain_T_step@{tau}"] = theirs - mine if mine is not None and theirs is not None else None
            mine_i = crossing_step(list(curve), list(curve.values()), tau)
            theirs_i = crossing_step(list(base_curve), list(base_curve.values()), tau) if base else None
            row[f"T_step_interp@{tau}"] = mine_i
            row[f"gain_T_step_interp@{tau}"] = theirs_i - mine_i if mine_i is not None and theirs_i is not None else None
        common = [s for s in curve if curve[s] is not None and base_curve.get(s) is not None]
        row["gain_M_mean"] = float(np.mean([curve[s] - base_curve[s] for s in common])) if common else None
        out[d.name] = row
    return out


@probe(metrics={"M_with_ids": "M over samples that hold at least one identifier-like token",
                "M_without_ids": "M over the other samples",
                "n_with_ids": "samples holding identifier-like tokens",
                "n_without_ids": "samples without",
                "M_id_tokens": "M over the identifier-like target tokens themselves",
                "M_other_tokens": "M over the other target tokens of the samples that hold identifiers",
                "id_token_share": "share of target tokens that are identifier-like"},
       show=("M_with_ids", "M_without_ids", "M_id_tokens", "M_other_tokens"))
def identifiers(hits, id_mask, lengths):
    """Memorization of samples with and without identifier-like content, and of the identifiers themselves. Whole
    records (`lengths`): over each record's own targets."""
    with_ids = id_mask.any(axis=1)  # (samples,)
    if lengths is not None:
        return _record_identifiers(hits, id_mask, lengths, with_ids)

    def mean(values):
        return float(values.mean()) if values.size else None

    return {"M_with_ids": mean(hits[with_ids]), "M_without_ids": mean(hits[~with_ids]),
            "n_with_ids": int(with_ids.sum()), "n_without_ids": int((~with_ids).sum()),
            "M_id_tokens": mean(hits[id_mask]), "M_other_tokens": mean(hits[with_ids][~id_mask[with_ids]]),
            "id_token_share": float(id_mask.mean())}


def _record_identifiers(hits, id_mask, lengths, with_ids):
    """`identifiers` over rows of varied length: every mean over the records' own targets only."""
    valid = own_targets(lengths, hits.shape[1])  # (samples, positions)

    def mean(where):
        return float(hits[where].mean()) if where.any() else None

    return {"M_with_ids": mean(valid & with_ids[:, None]), "M_without_ids": mean(valid & ~with_ids[:, None]),
            "n_with_ids": int(with_ids.sum()), "n_without_ids": int((~with_ids).sum()),
            "M_id_tokens": mean(id_mask), "M_other_tokens": mean(valid & with_ids[:, None] & ~id_mask),
            "id_token_share": float(id_mask.sum() / valid.sum())}


@series_probe(metrics={"T_step@tau[group]": "first step at which M of the group reaches tau"},
              show=("T_step@tau",), uses=("identifiers",))
def identifiers_series(checkpoints, datasets, taus: list[Tau] = (0.5, 0.9)):
    """How fast each group reaches tau: samples with and without identifiers, identifier and other tokens."""
    groups = ("M_with_ids", "M_without_ids", "M_id_tokens", "M_other_tokens")
    out = {}
    for d in datasets:
        out[d.name] = {f"T_step@{tau}": {g[2:]: _first_step(checkpoints, "identifiers", d.name, g, tau)
                                         for g in groups} for tau in taus}
    return out
