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
from memaudit.probes.privacy import roc_auc

from memaudit import plots, series_probe

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
}


def fig_twin(report):
    """The gain over the twin against the group value (Hubble's duplication level), a line per series, at the
    last compared checkpoint (left), and over training steps per group (right): look for the gain rising with
    duplication."""
    rows = []  # (series, data set, group value, metrics)
    for s in report.series:
        for name, r in s.results.get("twin", {}).items():
            if "[" in name and r.get("gain") is not None:
                value = name.rsplit("=", 1)[1].rstrip("]")
                try:
                    rows.append((s, name.split("[")[0], float(value), r))
                except ValueError:
                    continue
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
    from memaudit.errors import ConfigError

    if not any(s.reference for s in config.series):
        raise ConfigError("The twin probe compares a series with its twin, but no series of the yaml names one: add "
                          "'reference: <twin series>' to the series that saw the inserted data.")


@series_probe(metrics=METRICS, uses=("memorization",), opt_in=True, figures=(fig_twin,), validate=_validate,
              show=("reference", "gain", "M", "M_twin", "M_diff", "extractable_diff", "auc_reference", "auc_loss"))
def twin(panel, panels, series, series_configs, datasets):
    """The series against its `reference` twin, per data set and group: log-likelihood gain, M and
    extractability of both, and the reference-model membership score's AUC beside the loss's. Runs when the
    yaml's `probes:` names it."""
    config = series_configs.get(series.name)
    if panel is None or config is None or config.reference is None or panels.get(config.reference) is None:
        return {}
    other = panels[config.reference]
    theirs = other.steps
    at = [theirs.index(step) if config.reference_at == "same_step" and step in theirs else len(theirs) - 1
          for step in panel.steps]
    steps = {"steps": panel.steps, "twin_steps": [theirs[j] for j in at]}
    out, scores = {}, {}
    for d in datasets:
        if not (panel.has("memorization", "loss", d.name) and other.has("memorization", "loss", d.name)):
            continue
        loss = panel.values("memorization", "loss", d.name)  # (checkpoints, samples)
        loss_twin = other.values("memorization", "loss", d.name)[at]  # (checkpoints, samples), aligned
        values = {"M": (panel.values("memorization", "M", d.name), other.values("memorization", "M", d.name)[at])}
        if panel.has("memorization", "extractable", d.name) and other.has("memorization", "extractable", d.name):
            values["extractable"] = (panel.values("memorization", "extractable", d.name),
                                     other.values("memorization", "extractable", d.name)[at])
        reference, by_loss = loss_twin[-1] - loss[-1], -loss[-1]  # (samples,) each, at the last checkpoint
        scores[d.name] = (reference, by_loss, d.role)
        out[d.name] = _compare(config.reference, steps, loss, loss_twin, values, np.arange(loss.shape[1]))
        samples = panel.samples[d.name]
        level = samples.fields.get(samples.config.group_by) if samples.config.group_by else None
        numeric = level is not None and level.dtype.kind in "iuf"
        held_out = np.flatnonzero(level == 0) if numeric else np.array([], dtype=int)  # never inserted
        for group, index in samples.groups():
            out[group] = _compare(config.reference, steps, loss, loss_twin, values, index)
            if len(held_out) and level[index[0]] != 0:  # an inserted level against the never-inserted one
                out[group].update(auc_reference=roc_auc(reference[index], reference[held_out]),
                                  auc_loss=roc_auc(by_loss[index], by_loss[held_out]))
    inserted = [n for n, (_, _, role) in scores.items() if role == "train"]
    held = [n for n, (_, _, role) in scores.items() if role == "valid"]
    if held:
        for name in inserted:
            out[name].update(auc_reference=roc_auc(scores[name][0], np.concatenate([scores[h][0] for h in held])),
                             auc_loss=roc_auc(scores[name][1], np.concatenate([scores[h][1] for h in held])))
    return out


def _compare(reference: str, steps: dict, loss, loss_twin, values: dict, index) -> dict:
    """The comparison over the samples at `index`: gain over the twin and each value of both at the last
    checkpoint."""
    gain = (loss_twin[:, index] - loss[:, index]).mean(axis=1)  # (checkpoints,)
    row = {"reference": reference, **steps, "gain": float(gain[-1]), "gain_curve": gain.tolist(),
           "n_samples": int(len(index))}
    for name, (mine, twins) in values.items():
        a, b = float(mine[-1, index].mean()), float(twins[-1, index].mean())
        row.update({name: a, f"{name}_twin": b, f"{name}_diff": a - b})
    return row
