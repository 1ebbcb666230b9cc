"""Privacy review: canary exposure, membership inference, memorized strings.

All from the one teacher-forced pass: canary candidates are scored as extra samples, and the
membership scores use per-token log-probabilities plus the entropy and second moment of each
next-token distribution, reduced on the device. No training text enters the report unless
`--show-text` is given, and then it is redacted (see memaudit/inputs/texts.py).
"""

from __future__ import annotations

from typing import Annotated

import numpy as np
from pydantic import Field

from memaudit import Column, DatasetName, plots, probe
from memaudit.engine.sampling import SamplingScheme
from memaudit.inputs.canaries import exposure
from memaudit.measures import (
    DEFAULT_SCHEMES,
    SCORE_COLUMNS,
    extractable_samples,
    log_pz,
    membership_rows,
    record_split,
    roc_auc,
    tpr_at_fpr,
)

CANARY_METRICS = {
    "exposure": "canary id -> exposure in bits, log2 |R| - log2 rank of the inserted secret",
    "exposure_stderr": "canary id -> standard error of the exposure (0 when every candidate was scored)",
    "rank": "canary id -> rank of the inserted secret among the candidates (estimated when sampled)",
    "exact": "canary id -> True when every candidate was scored, False when the rank is estimated from a sample",
    "exposure_max": "largest exposure over the canaries",
    "exposure_mean": "mean exposure over the canaries",
}



def fig_privacy(report):
    """Canary exposure and membership-inference AUC over checkpoints (a panel for each the report has): exposure
    near log2|R| or an AUC well above 0.5 means the model gives its training data away."""
    exposure = list(plots.series_curves(report, "canaries", "exposure_max"))
    auc = list(plots.series_curves(report, "membership", "auc_loss"))
    if not exposure and not auc:
        return None
    panels = [(curves, label) for curves, label in ((exposure, "canary exposure (bits)"),
                                                    (auc, "membership-inference ROC AUC (loss)")) if curves]
    plt = plots.pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.8), squeeze=False)  # no empty panel
    for ax, (curves, label) in zip(axes[0], panels):
        for i, (s, d, steps, values) in enumerate(curves):
            ax.plot(steps, values, marker="o", markersize=3, color=plots.PALETTE[i % len(plots.PALETTE)], label=f"{s.name} · {d}")
        plots.step_axis(ax, [x for _, _, steps, _ in curves for x in steps])
        ax.set_ylabel(label)
        ax.legend(fontsize=8)
    fig.suptitle("Privacy over training")
    fig.tight_layout()
    return fig


def canary_rows(logprobs, target_mask) -> dict[str, np.ndarray]:
    """Per candidate of a canary file: its log-perplexity from the secret on (the score exposure ranks)."""
    if target_mask is None:
        return {}
    return {"log_perplexity": -(logprobs.astype(np.float64) * target_mask).sum(axis=1)}  # (candidates,)


@probe(metrics=CANARY_METRICS, show=("exposure_max", "exposure_mean", "exposure"), figures=(fig_privacy,),
       rows=canary_rows, columns={"log_perplexity": Column(
           "float64", "a canary candidate's log-perplexity from the secret on (exposure ranks the inserted secret "
           "among the candidates by it)", unit="nats", higher="less likely under the model")})
def canaries(rows, target_mask, sample_ids, dataset):
    """Exposure of every canary in a canary file (role: canary), from each candidate's log-perplexity (which
    `--samples-out` writes, a row per candidate)."""
    if target_mask is None or not dataset.canaries or "log_perplexity" not in rows:
        return {}
    scores = rows["log_perplexity"]  # (candidates,)
    groups: dict[str, list[int]] = {}
    for i, sid in enumerate(sample_ids):
        groups.setdefault(sid.rsplit("#", 1)[0], []).append(i)
    out = {"exposure": {}, "exposure_stderr": {}, "rank": {}, "exact": {}}
    for cid, rows in groups.items():  # rows[0] is the inserted secret
        meta = dataset.canaries[cid]
        e = exposure(scores[rows], meta["space"], meta["exact"])
        out["exposure"][cid], out["exposure_stderr"][cid] = e["exposure"], e["exposure_stderr"]
        out["rank"][cid], out["exact"][cid] = e["rank"], e["exact"]
    values = list(out["exposure"].values())
    return {**out, "exposure_max": max(values), "exposure_mean": float(np.mean(values))}


@probe(per_dataset=False, rows=membership_rows, columns=SCORE_COLUMNS,
       metrics={"auc_<score>": "ROC AUC of telling members from non-members by <score>: loss, zlib, min_k, min_k_pp",
                "tpr@1%fpr_<score>": "true-positive rate at 1% false-positive rate",
                "n_members": "member samples", "n_non_members": "non-member samples",
                "samples": "with per_sample: per sample its data set, id, member or not, and each score"},
       show=("auc_loss", "auc_zlib", "auc_min_k", "auc_min_k_pp"))
def membership(data, members: DatasetName = "train", non_members: DatasetName = "valid",
               k_percent: Annotated[float, Field(gt=0, le=100)] = 20.0, per_sample: bool = False):
    """Membership-inference scores (loss, zlib, Min-K% prob, Min-K%++) with ROC AUC and TPR at 1% FPR, from
    per-sample scores (so at any scale); `per_sample` also lists every sample's scores."""
    if members not in data or non_members not in data:
        return {}
    a, b = data[members].rows, data[non_members].rows  # score -> (samples,)
    out = {"n_members": int(len(a["loss"])), "n_non_members": int(len(b["loss"]))}
    for score in a:
        out[f"auc_{score}"] = roc_auc(a[score], b[score])
        out[f"tpr@1%fpr_{score}"] = tpr_at_fpr(a[score], b[score])
    if per_sample:
        ids = [*data[members].sample_ids, *data[non_members].sample_ids]
        out["samples"] = {"dataset": [members] * len(a["loss"]) + [non_members] * len(b["loss"]), "id": ids,
                          "member": [True] * len(a["loss"]) + [False] * len(b["loss"]),
                          **{score: np.concatenate([a[score], b[score]]) for score in a}}
    return out


@probe(metrics={"n_extractable": "samples whose next m tokens after a k-token prefix are all greedy hits",
                "strings": "the extractable samples: id, matched length, log10 p_z per sampling scheme (the chance "
                           "that one sampled continuation reproduces the suffix; null when it is exactly 0) and, with "
                           "--show-text, redacted text"},
       show=("n_extractable",))
def memorized_strings(hits, sampling_logprobs, sample_ids, text_of, checkpoint, lengths, dataset,
                      k: Annotated[int, Field(ge=1)] = 32, m: Annotated[int, Field(ge=1)] = 32,
                      max_strings: Annotated[int, Field(ge=0)] = 20, schemes: list[SamplingScheme] = DEFAULT_SCHEMES):
    """Which samples a checkpoint would reproduce verbatim (k-extractable), for the reviewer. Whole records: the
    k-token prefix starts at each record's first token; records shorter than k + m are not candidates."""
    first, applies = (0, True) if lengths is None else record_split(lengths, dataset, k, m)
    if hits.shape[1] < first + k + m - 1 or getattr(checkpoint, "objective", "causal") != "causal":
        return {}
    verdict, run = extractable_samples(hits[:, first:], k, m)  # (samples,) each
    rows = np.flatnonzero(verdict & applies)
    labels = [SamplingScheme.model_validate(s).label for s in schemes]
    log10_pz = {label: log_pz(sampling_logprobs[label][:, first:], k, m) / np.log(10)
                for label in labels}  # (samples,) each
    strings = []
    for i in rows[:max_strings]:
        entry = {"id": sample_ids[i], "match_len": int(run[i]),
                 "log10_pz": {label: float(values[i]) for label, values in log10_pz.items()}}
        if text_of is not None:
            entry["text"] = text_of(int(i))
        strings.append(entry)
    return {"n_extractable": int(len(rows)), "strings": strings}
