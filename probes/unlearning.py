"""Unlearning audit: did the checkpoint really forget? (MUSE, Shi et al. 2024; TOFU, Maini et al. 2024.)

Data sets by role: `forget` (what was to be forgotten), `retain` (training data to keep), `holdout` (text of
the same kind never trained on). Per checkpoint, `unlearning_membership` tells the forget set from the
holdout set by membership scores, oriented as MUSE (swj0419/muse_bench, metrics/privleak.py) orients them:
the holdout set is the positive class and the score is the negated loss (or Min-K%), so the AUC is 0.5 when
the model cannot tell the two sets apart and falls towards 0 while the forget set still scores like training
data. Over the series, `unlearning` gives the forget / retain / holdout curves, the forget set's excess over
holdout M (back to the level of unseen text?), the retain set's change (utility kept) and MUSE's PrivLeak
against a reference series retrained without the forget set: (AUC_unlearned - AUC_retrained) / AUC_retrained
(near 0: leaks like a model that never saw it; < 0: under-unlearned; > 0: over-unlearned). MUSE prints it
multiplied by 100 and takes Min-K% at 40% as its headline score (`privleak_min_k` here).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from memaudit import SeriesName, plots, probe, series_probe
from memaudit.measures import SCORE_COLUMNS, membership_rows, roc_auc

ROLES = ("forget", "retain", "holdout")
SCORES = ("loss", "min_k", "min_k_pp")


@probe(per_dataset=False, rows=membership_rows, columns=SCORE_COLUMNS,
       metrics={"auc_<score>": "MUSE's forget-vs-holdout ROC AUC by <score> (loss; min_k: Min-K% at k_percent, "
                               "MUSE's default 40%; min_k_pp: Min-K%++), the holdout set the positive class: 0.5 "
                               "when the model cannot tell the sets apart, near 0 while the forget set still scores "
                               "like training data",
                "n_forget": "forget-set samples", "n_holdout": "holdout samples"},
       show=("auc_loss", "auc_min_k", "auc_min_k_pp"))
def unlearning_membership(data, k_percent: Annotated[float, Field(gt=0, le=100)] = 40.0):
    """Forget set vs holdout set: membership-inference AUCs (loss, Min-K% at 40%, Min-K%++) as MUSE computes
    them, per checkpoint."""
    forget = [d for d in data.values() if d.dataset.role == "forget"]
    holdout = [d for d in data.values() if d.dataset.role == "holdout"]
    if not forget or not holdout:
        return {}
    a, b = forget[0].rows, holdout[0].rows  # score -> (samples,); one data set per role (the yaml's rule)
    out = {"n_forget": int(len(a["loss"])), "n_holdout": int(len(b["loss"]))}
    for score in SCORES:
        out[f"auc_{score}"] = roc_auc(b[score], a[score])  # MUSE: holdout label 1, forget label 0
    return out


def privleak(auc_unlearned: float | None, auc_retrained: float | None) -> float | None:
    """MUSE's PrivLeak: (AUC_unlearned - AUC_retrained) / AUC_retrained, as a fraction (MUSE prints x100)."""
    if auc_unlearned is None or not auc_retrained:
        return None
    return (auc_unlearned - auc_retrained) / auc_retrained


METRICS = {
    "steps": "step of each checkpoint from the start of unlearning on",
    "M_<role>": "M on the forget / retain / holdout set at those checkpoints",
    "loss_<role>": "loss on each set at those checkpoints",
    "extractable_<role>": "share of each set's samples k-extractable (greedy) at those checkpoints",
    "auc_<score>": "MUSE's forget-vs-holdout membership AUC at those checkpoints (loss, min_k, min_k_pp)",
    "before": "checkpoint at the start of unlearning (ledger; else the first)",
    "after": "last checkpoint",
    "M_forget_before": "forget-set M before unlearning", "M_forget_after": "forget-set M after",
    "M_holdout_after": "holdout M after",
    "forget_excess": "forget-set M minus holdout M after unlearning (0: back to the level of unseen text)",
    "retain_M_change": "retain-set M after minus before (utility kept: near 0)",
    "retain_loss_change": "retain-set loss after minus before",
    "reference": "series retrained without the forget set (parameter `reference`), compared at its last checkpoint",
    "reference_M_forget": "the reference's forget-set M (what never having seen it gives)",
    "privleak_<score>": "MUSE's PrivLeak after unlearning: (AUC_unlearned - AUC_retrained) / AUC_retrained, as a "
                        "fraction (MUSE prints x100; its headline is privleak_min_k): near 0 leaks like a model "
                        "that never saw the forget set, < 0 under-unlearned, > 0 over-unlearned",
    "relearn_M_before": "relearning check (lab): M on the held-back part of the forget set before fine-tuning on the rest",
    "relearn_M_after": "the same after the relearning steps (a quick return means the knowledge was hidden, not removed)",
    "relearn_steps": "relearning optimizer steps",
}


def fig_unlearning(report):
    """Forget, retain and holdout M over the unlearning steps (dotted: the retrained reference's levels): look
    for forget M falling to the holdout line while retain M stays up."""
    rows = [(s, d, r) for s in report.series for d, r in s.results.get("unlearning", {}).items() if r.get("steps")]
    if not rows:
        return None
    plt = plots.pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for i, (s, _, r) in enumerate(rows):
        for j, role in enumerate(ROLES):
            values = r.get(f"M_{role}")
            if values and any(v is not None for v in values):
                ax.plot(r["steps"], values, marker="o", markersize=3, color=plots.PALETTE[j],
                        linestyle=plots.LINESTYLES[i % len(plots.LINESTYLES)], label=f"{s.name} · {role}")
        if i == 0 and r.get("reference"):
            ref = next((x for x in report.series if x.name == r["reference"]), None)
            last = next((c for c in reversed(ref.checkpoints) if c.error is None), None) if ref else None
            for j, role in enumerate(ROLES):
                level = _metric_on_role(last, report.datasets, role, "M")
                if level is not None:
                    ax.axhline(level, color=plots.PALETTE[j], linestyle=":", linewidth=1.2)
    plots.step_axis(ax, [x for _, _, r in rows for x in r["steps"]])
    ax.set_ylabel("exact memorization M")
    ax.set_ylim(0, 1.02)
    ax.set_title("Unlearning: forget / retain / holdout M (dotted: the retrained reference)", fontsize=10)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    return fig


def _metric_on_role(checkpoint, datasets, role: str, metric: str):
    name = next((d.name for d in datasets if d.role == role), None)
    return checkpoint.metric("memorization", name, metric) if name and checkpoint else None


@series_probe(metrics=METRICS, not_numbers=("steps", "M_<role>", "loss_<role>", "extractable_<role>", "auc_<score>",
                                             "before", "after", "reference"), show=("before", "after", "M_forget_before", "M_forget_after", "M_holdout_after",
                                     "forget_excess", "retain_M_change", "retain_loss_change", "reference",
                                     "reference_M_forget", "privleak_loss", "privleak_min_k", "privleak_min_k_pp",
                                     "relearn_M_before",
                                     "relearn_M_after", "M_forget", "M_retain", "M_holdout", "auc_loss"),
              uses=("memorization", "unlearning_membership"), figures=(fig_unlearning,))
def unlearning(checkpoints, datasets, series, all_series, ledger, reference: SeriesName | None = None):
    """Forget / retain / holdout over the unlearning steps, the forget set's excess over holdout M, utility
    kept, PrivLeak against a series retrained without the forget set, and the lab's relearning check."""
    roles = {d.role: d.name for d in datasets if d.role in ROLES}
    if "forget" not in roles or series.name == reference:
        return {}
    start = _unlearning_start(ledger)
    done = [c for c in checkpoints if "memorization" in c.results]
    if start is not None:
        done = [c for c in done if c.step is not None and c.step >= start]
    if not done:
        return {}
    before, after = done[0], done[-1]
    row: dict = {"steps": [c.step for c in done]}
    for role, name in roles.items():
        for metric in ("M", "loss", "extractable"):
            row[f"{metric}_{role}"] = [c.metric("memorization", name, metric) for c in done]
    for score in SCORES:
        row[f"auc_{score}"] = [c.metric("unlearning_membership", "all", f"auc_{score}") for c in done]
    row.update(before=before.name, after=after.name, M_forget_before=row["M_forget"][0],
               M_forget_after=row["M_forget"][-1])
    if "holdout" in roles:
        row["M_holdout_after"] = row["M_holdout"][-1]
        row["forget_excess"] = _minus(row["M_forget"][-1], row["M_holdout"][-1])
    if "retain" in roles:
        row["retain_M_change"] = _minus(row["M_retain"][-1], row["M_retain"][0])
        row["retain_loss_change"] = _minus(row["loss_retain"][-1], row["loss_retain"][0])
    ref = next((s for s in all_series if s.name == reference), None) if reference else None
    if reference:
        row["reference"] = reference
        last = next((c for c in reversed(ref.checkpoints) if c.error is None), None) if ref else None
        if last is not None:
            row["reference_M_forget"] = last.metric("memorization", roles["forget"], "M")
            for score in SCORES:
                row[f"privleak_{score}"] = privleak(after.metric("unlearning_membership", "all", f"auc_{score}"),
                                                    last.metric("unlearning_membership", "all", f"auc_{score}"))
    row.update(_relearning(ledger))
    return {roles["forget"]: row}


def _minus(a, b):
    return a - b if a is not None and b is not None else None


def _unlearning_start(ledger) -> int | None:
    """The step unlearning started from (the checkpoint before its first update), from the lab's ledger."""
    for intervention in (ledger.interventions if ledger else ()):
        if intervention.kind == "unlearning" and intervention.steps:
            return min(intervention.steps) - 1
    return None


def _relearning(ledger) -> dict:
    for intervention in (ledger.interventions if ledger else ()):
        if intervention.kind == "unlearning" and intervention.detail.get("relearn"):
            r = intervention.detail["relearn"]
            return {"relearn_M_before": r.get("M_before"), "relearn_M_after": r.get("M_after"),
                    "relearn_steps": r.get("steps")}
    return {}
