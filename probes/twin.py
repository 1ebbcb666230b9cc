"""Minimal pairs: a series against its twin that never saw the data (Hubble, Wei et al. 2025).

A `perturbed` model trained with text inserted at controlled duplication levels and its `standard` twin
trained on the same corpus without it: whatever the perturbed model knows about an inserted sample beyond
what its twin knows is memorization, by design. With `reference: <twin>` on a series (and the twin audited
in the same run), `twin` compares each checkpoint with the twin's at the same step, from both series'
per-sample panels (the same samples, scored once per checkpoint each): the log-likelihood gain over the twin,
M and greedy extractability of both and their difference, per data set and per group of its `group_by`
field (Hubble's duplicate count), and how well the reference-model score (twin's loss minus the model's;
Carlini et al. 2021's reference attack, MIMIR's `ref`) tells inserted samples from held-out ones, beside
the loss alone.
"""

from __future__ import annotations

import numpy as np

from memaudit import plots, series_probe
from memaudit.measures import roc_auc
from memaudit.results.values import is_number

METRICS = {
    "reference": "the twin series", "steps": "steps compared", "twin_steps": "the twin's checkpoint for each",
    "gain": "mean over samples of the log-likelihood gain over the twin (twin's loss - this model's, nats per "
            "token) at the last compared checkpoint: > 0 means the model knows these samples beyond its twin",
    "gain_curve": "the gain at each compared checkpoint",
    "M": "M at the last compared checkpoint", "M_twin": "the twin's M there", "M_diff": "M - M_twin",
    "extractable": "share of samples greedily extractable", "extractable_twin": "the twin's",
    "extractable_diff": "extractable - extractable_twin",
    "auc_reference": "ROC AUC of telling inserted samples (role train; in a group_by data set, values > 0) from "
                     "held-out ones (role valid; value 0) by the reference score, twin's loss - this model's",
    "auc_loss": "the same by this model's loss alone (the loss attack), for comparison",
    "n_samples": "samples compared",
    "rougeL_f1": "with the generation probe: mean ROUGE-L F1 of the continuations (greedy when asked, first prefix "
                 "length; samples generated for in both series)", "rougeL_f1_twin": "the twin's",
    "rougeL_f1_diff": "rougeL_f1 - rougeL_f1_twin",
    "approx": "with the generation probe: share of continuations approximately memorized (BLEU > 0.75, Ippolito "
              "et al. 2023)", "approx_twin": "the twin's", "approx_diff": "approx - approx_twin",
    "generation_columns": "the generation probe's per-sample columns compared (scheme and prefix length)",
    "level": "the group's numeric value (the duplication level), on a group of a numeric group_by field",
    "steps_missing": "steps of this series whose twin checkpoint is missing (failed to load): not compared",
    "note": "why a data set is not compared, when it is not (samples that cannot be paired by id, no twin "
            "checkpoint at any step)",
}


def fig_twin(report):
    """The gain over the twin against the group value (Hubble's duplication level), a line per series, at the
    last compared checkpoint (left), and over training steps per group (right): look for the gain rising with
    duplication."""
    rows = []  # (series, data set, group value, metrics)
    groups = {d.name: d for d in report.datasets if d.group is not None}  # a group -> its data set and value
    for s in report.series:
        for name, r in s.results.get("twin", {}).items():
            d = groups.get(name)
            if d is not None and r.get("gain") is not None and is_number(d.group.value) \
                    and not isinstance(d.group.value, bool):
                rows.append((s, d.group_of, float(d.group.value), r))
    if not rows:
        return None
    plt = plots.pyplot()
    fig, (dose, time) = plt.subplots(1, 2, figsize=(11, 4))
    for i, key in enumerate(sorted({(s.name, d) for s, d, _, _ in rows})):
        points = sorted((v, r) for s, d, v, r in rows if (s.name, d) == key)
        color = plots.PALETTE[i % len(plots.PALETTE)]
        dose.plot([v for v, _ in points], [r["gain"] for _, r in points], marker="o", color=color,
                  label=f"{key[0]} · {key[1]}")
        for j, (v, r) in enumerate(points):  # a shade per level, darker for more duplicates
            time.plot(r["steps"], r["gain_curve"], color=plt.cm.viridis(0.9 * (1 - j / max(1, len(points) - 1))),
                      linestyle=plots.LINESTYLES[i % len(plots.LINESTYLES)], label=f"{key[0]} · {v:g}")
    from matplotlib.ticker import FuncFormatter, NullLocator

    dose.set_xscale("symlog", linthresh=1)
    dose.set_xticks(sorted({v for _, _, v, _ in rows}))  # a tick at each level, written as a number
    dose.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
    dose.xaxis.set_minor_locator(NullLocator())
    dose.set_xlabel("group value (duplication level)")
    dose.set_ylabel("log-likelihood gain over the twin (nats/token)")
    dose.axhline(0, color="grey", linewidth=0.8)
    dose.legend(fontsize=8)
    plots.step_axis(time, [x for _, _, _, r in rows for x in r["steps"]])
    time.set_ylabel("gain over the twin")
    time.legend(fontsize=7, ncol=2)
    fig.suptitle("Minimal pairs: what the model knows beyond its twin")
    fig.tight_layout()
    return fig


def _validate(params: dict, config) -> None:
    from memaudit.inputs.twins import require_reference

    require_reference(config.series)


@series_probe(metrics=METRICS, uses=("memorization", "generation"), opt_in=True, figures=(fig_twin,), validate=_validate,
              not_numbers=("reference", "steps", "twin_steps", "gain_curve", "steps_missing", "note",
                           "generation_columns"),
              for_series=lambda series: series.reference is not None, per_group=True,
              show=("reference", "gain", "M", "M_twin", "M_diff", "extractable_diff", "auc_reference", "auc_loss",
                    "steps_missing", "note"))
def twin(panel, panels, series, series_configs, datasets):
    """The series against its `reference` twin, per data set and group: log-likelihood gain, M and
    extractability of both, and the reference-model membership score's AUC beside the loss's. Samples are
    paired by id (and must be the same tokens); a step whose twin checkpoint is missing is listed, never
    compared with another. Runs when the yaml's `probes:` names it."""
    config = series_configs.get(series.name)
    if panel is None or config is None or config.reference is None or panels.get(config.reference) is None:
        return {}
    from memaudit.inputs.twins import pairs

    other = panels[config.reference]
    theirs = other.steps
    paired, missing = pairs(panel.steps, theirs, config.reference_at)
    mine, at = [p for p, _ in paired], [q for _, q in paired]
    steps = {"steps": [panel.steps[i] for i in mine], "twin_steps": [theirs[j] for j in at],
             "steps_missing": missing}
    out, scores = {}, {}
    for d in datasets:
        if not (panel.has("memorization", "loss", d.name) and other.has("memorization", "loss", d.name)):
            continue
        if not mine:
            out[d.name] = {"reference": config.reference, **steps,
                           "note": f"the twin '{config.reference}' has no checkpoint at any step of this series "
                                   "(a checkpoint that failed to load is not replaced by another)"}
            continue
        order, why = _paired(panel.samples[d.name], other.samples[d.name])
        if why:
            out[d.name] = {"reference": config.reference, **steps, "note": why}
            continue

        def pair(column):  # (checkpoints, samples) of this series and of the twin, same steps, same samples
            return (panel.values("memorization", column, d.name)[mine],
                    other.values("memorization", column, d.name)[at][:, order])

        loss, loss_twin = pair("loss")
        values = {"M": pair("M")}
        if panel.has("memorization", "extractable", d.name) and other.has("memorization", "extractable", d.name):
            values["extractable"] = pair("extractable")
            if panel.has("memorization", "extraction_applies", d.name):  # whole records: short ones are neither
                applies = pair("extraction_applies")[0]  # (checkpoints, samples): the same samples in both series
                values["extractable"] = tuple(np.where(applies, v, np.nan) for v in values["extractable"])
        generated = _generation_columns(panel, other, d.name)
        for name, column in generated.items():  # NaN where either series did not generate for the sample
            ours, theirs_ = (panel.values("generation", column, d.name)[mine],
                             other.values("generation", column, d.name)[at][:, order])
            both = ~(np.isnan(ours) | np.isnan(theirs_))  # (checkpoints, samples)
            values[name] = (np.where(both, ours, np.nan), np.where(both, theirs_, np.nan))
        reference, by_loss = loss_twin[-1] - loss[-1], -loss[-1]  # (samples,) each, at the last checkpoint
        scores[d.name] = (reference, by_loss, d.role)
        compared = {**steps, **({"generation_columns": list(generated.values())} if generated else {})}
        out[d.name] = _compare(config.reference, compared, loss, loss_twin, values, np.arange(loss.shape[1]))
        samples = panel.samples[d.name]
        level = samples.fields.get(samples.config.group_by) if samples.config.group_by else None
        numeric = level is not None and level.dtype.kind in "iuf"
        held_out = np.flatnonzero(level == 0) if numeric else np.array([], dtype=int)  # never inserted
        for group in samples.groups():
            index = group.index
            out[group.name] = _compare(config.reference, compared, loss, loss_twin, values, index)
            if numeric:
                out[group.name]["level"] = group.value
            if len(held_out) and group.value != 0:  # an inserted level against the never-inserted one
                out[group.name].update(auc_reference=roc_auc(reference[index], reference[held_out]),
                                       auc_loss=roc_auc(by_loss[index], by_loss[held_out]))
    inserted = [n for n, (_, _, role) in scores.items() if role == "train"]
    held = [n for n, (_, _, role) in scores.items() if role == "valid"]
    if held:
        for name in inserted:
            out[name].update(auc_reference=roc_auc(scores[name][0], np.concatenate([scores[h][0] for h in held])),
                             auc_loss=roc_auc(scores[name][1], np.concatenate([scores[h][1] for h in held])))
    return out


def _generation_columns(panel, other, dataset: str) -> dict[str, str]:
    """The generation probe's ROUGE-L F1 and approximate-memorization columns both panels hold for a data set: the
    first scheme's (greedy when asked) at the first prefix length; none without the probe."""
    mine = [c for c in panel.columns("generation", dataset) if other.has("generation", c, dataset)]
    return {name: found[0] for name in ("rougeL_f1", "approx")
            if (found := [c for c in mine if c.startswith(f"{name}__")])}


BLOCK = 4096  # samples whose tokens are compared at a time


def _paired(mine, theirs) -> tuple[np.ndarray | None, str | None]:
    """The position in the twin's data set of each of this series' samples, matched by id and checked to be the
    same tokens; or (None, why they cannot be paired)."""
    name = mine.config.name
    ids = [str(i) for i in theirs.ids]
    where = {sid: j for j, sid in enumerate(ids)}
    if len(where) < len(ids):
        return None, (f"the twin's data set '{name}' repeats sample ids, so its samples cannot be paired with this "
                      "series' by id: give every record a unique 'id'")
    lacking = [str(i) for i in mine.ids if str(i) not in where]
    if lacking:
        return None, (f"the twin's data set '{name}' lacks {len(lacking)} of this series' {len(mine.ids)} samples "
                      f"(ids {', '.join(lacking[:3])}{', ...' if len(lacking) > 3 else ''}): samples are compared by "
                      "id, so both series need the same samples")
    order = np.array([where[str(i)] for i in mine.ids], dtype=np.int64)
    if mine.tokens.shape[1] != theirs.tokens.shape[1] or not all(  # in blocks: memory-mapped data stays on disk
            np.array_equal(mine.tokens[start:start + BLOCK], theirs.tokens[order[start:start + BLOCK]])
            for start in range(0, len(order), BLOCK)):
        return None, (f"the samples of data set '{name}' have the same ids in both series but other tokens: the twin's "
                      "file holds other text under those ids (or, without ids in the records, the records in another "
                      "order). Give each record an 'id' that names its text")
    return order, None


def _compare(reference: str, steps: dict, loss, loss_twin, values: dict, index) -> dict:
    """The comparison over the samples at `index`: gain over the twin and each value of both at the last
    checkpoint."""
    gain = (loss_twin[:, index] - loss[:, index]).mean(axis=1)  # (checkpoints,)
    row = {"reference": reference, **steps, "gain": float(gain[-1]), "gain_curve": gain.tolist(),
           "n_samples": int(len(index))}
    for name, (mine, twins) in values.items():
        a, b = _mean(mine[-1, index]), _mean(twins[-1, index])
        row.update({name: a, f"{name}_twin": b, f"{name}_diff": a - b if a is not None and b is not None else None})
    return row


def _mean(values: np.ndarray) -> float | None:
    """The mean of the values that apply (NaN: a record too short for extraction); None when none does."""
    values = np.asarray(values, dtype=np.float64)
    return float(np.nanmean(values)) if not np.isnan(values).all() else None
