"""Exact memorization M(f), loss and k-extractability per checkpoint; T(N, tau) and
memorization before overfitting over a series (Tirumala et al. 2022; Carlini et al.)."""

from __future__ import annotations

import math
import re
from typing import Annotated

import numpy as np
from pydantic import Field

from memaudit import Column, plots, probe, series_probe
from memaudit.measures import crossing_step, extractable_samples, own_targets, record_split

Positive = Annotated[int, Field(ge=1)]
Tau = Annotated[float, Field(ge=0, le=1)]

METRICS = {
    "M": "exact memorization: fraction of target tokens whose teacher-forced argmax is the true token",
    "loss": "mean next-token cross-entropy (nats)",
    "ppl": "perplexity, exp(loss)",
    "sample_M_mean": "mean over samples of per-sample M",
    "sample_M_p10": "10th percentile of per-sample M",
    "sample_M_p50": "median of per-sample M",
    "sample_M_p90": "90th percentile of per-sample M",
    "extractable": "fraction of samples k-extractable: with the first k tokens as prefix, greedy decoding "
                   "reproduces the next m (None when seq_len < k + m)",
    "n_extractable": "number of k-extractable samples",
    "match_len_mean": "mean number of tokens greedy decoding reproduces after the k-token prefix (at most m)",
    "M_update": "M on the batch of the update that produced this checkpoint (a lab ledger, or the data's seen_at_step)",
    "n_samples": "samples scored",
    "n_tokens": "target tokens scored",
    "n_extraction_not_applicable": "with samples: records: records shorter than k + m tokens, left out of "
                                   "extractable (neither extractable nor not)",
    "samples": "with per_sample: one column per field, one entry per sample (id, M, loss, and with greedy "
               "decoding extractable and match_len); `report.samples_frame()` makes it a table",
}



def fig_memorization(report):
    """M over checkpoints, a line per series and data set: look for training M rising away from held-out M,
    faster for larger models."""
    curves = list(plots.series_curves(report, "memorization", "M"))
    if not curves:
        return None
    plt = plots.pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    datasets = sorted({d for _, d, _, _ in curves})
    lines = plots.grouped(report, curves)  # seed replicates: mean with a ± sd band
    labels = list(dict.fromkeys(label for label, *_ in lines))
    for label, _, d, steps, mean, sd in lines:
        plots.draw(ax, steps, mean, sd, plots.PALETTE[labels.index(label) % len(plots.PALETTE)], marker="o",
                   markersize=3, linestyle=plots.LINESTYLES[datasets.index(d) % len(plots.LINESTYLES)],
                   label=f"{label} · {d}")
    plots.step_axis(ax, [x for _, _, steps, _ in curves for x in steps])
    ax.set_ylabel("exact memorization M (fraction of target tokens)")
    ax.set_ylim(0, 1.02)
    ax.set_title("Memorization over training")
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    return fig

def fig_T_vs_params(report):
    """T(N, tau) against parameters, log-log, a line per tau, each point labelled with its model size (with seed
    replicates, error bars of one sd): a falling line means larger models memorize sooner."""
    rows = []  # (tau, data set, params, T, sd over seeds or None)
    grouped = {name for g in report.replicates for name in g.series}
    for g in report.replicates:
        for d, metrics in g.metrics.get("memorization_series", {}).items():
            for key, value in metrics.items():
                m = re.fullmatch(r"T_step@([0-9.]+)", key)
                if m and value.mean and g.n_params and value.n == len(value.values):
                    rows.append((float(m.group(1)), d, g.n_params, value.mean, value.std))
    for s in report.series:
        for d, r in s.results.get("memorization_series", {}).items() if s.name not in grouped else ():
            for key, value in r.items():
                m = re.fullmatch(r"T_step@([0-9.]+)", key)
                if m and value and s.n_params:
                    rows.append((float(m.group(1)), d, s.n_params, value, None))
    if not rows:
        return None
    plt = plots.pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for i, (tau, d) in enumerate(sorted({(t, d) for t, d, *_ in rows})):
        pts = sorted((n, t, e) for tt, dd, n, t, e in rows if (tt, dd) == (tau, d))
        style = {"marker": "o", "color": plots.PALETTE[i % len(plots.PALETTE)], "label": f"tau = {tau} · {d}"}
        if any(p[2] for p in pts):  # seed replicates: error bars of one sd
            ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=[p[2] or 0 for p in pts], capsize=3, **style)
        else:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], **style)
    from matplotlib.ticker import FuncFormatter, NullFormatter

    from memaudit.report.render import fmt_params

    for n, t in sorted({(n, t) for _, _, n, t, _ in rows}):
        ax.annotate(fmt_params(n), (n, t), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(sorted({n for _, _, n, _, _ in rows}))  # a tick at each model size, named 1M, not 10^6
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: fmt_params(int(x))))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:,.0f}"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("parameters N")
    ax.set_ylabel("T(N, tau): first step with M >= tau")
    ax.set_title("Larger models memorize sooner?")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def memorization_rows(hits, logprobs, checkpoint, lengths, dataset, k: int, m: int):
    """Per sample: M (share of its targets hit), loss (mean cross-entropy, accumulated in float64) and, for a
    causal LM whose samples are long enough, the greedy verdict and matched length (see extractable_samples)
    and the suffix's loss (mean cross-entropy of the m tokens after the k-token prefix). Whole records (`lengths`)
    count only their own targets; see `_record_rows`."""
    if lengths is not None:
        return _record_rows(hits, logprobs, lengths, dataset, k, m)
    out = {"M": hits.mean(axis=1), "loss": -logprobs.astype(np.float64).mean(axis=1)}  # (samples,) each
    if checkpoint.objective == "causal" and hits.shape[1] >= k + m - 1:
        out["extractable"], out["match_len"] = extractable_samples(hits, k, m)  # (samples,) each
        out["suffix_loss"] = -logprobs[:, k - 1:k + m - 1].astype(np.float64).mean(axis=1)  # the m tokens after k
    return out


def _record_rows(hits, logprobs, lengths, dataset, k: int, m: int):
    """`memorization_rows` on rows of varied length (samples: records): means over each row's targets only. The
    k-token prefix is the record's first k tokens (after the prefix token the data set puts before it), the suffix
    the m after them; a record with fewer than k + m tokens has no such split (`extraction_applies` false): it is
    neither extractable nor not, and the probe counts it apart."""
    targets = lengths - 1  # (samples,)
    valid = own_targets(lengths, hits.shape[1])  # (samples, positions)
    out = {"M": (hits & valid).sum(axis=1) / targets,
           "loss": -np.where(valid, logprobs, 0).astype(np.float64).sum(axis=1) / targets}  # (samples,) each
    first, applies = record_split(lengths, dataset, k, m)  # applies: (samples,)
    out["extraction_applies"] = applies
    if hits.shape[1] >= first + k + m - 1:
        verdict, matched = extractable_samples(hits[:, first:], k, m)  # (samples,) each
        out["extractable"], out["match_len"] = verdict & applies, np.where(applies, matched, 0).astype(np.int32)
        suffix = logprobs[:, first + k - 1:first + k + m - 1].astype(np.float64).mean(axis=1)
        out["suffix_loss"] = np.where(applies, -suffix, np.nan)
    else:
        out["extractable"], out["match_len"] = np.zeros(len(lengths), bool), np.zeros(len(lengths), np.int32)
        out["suffix_loss"] = np.full(len(lengths), np.nan)
    return out


COLUMNS = {
    "M": Column("float64", "share of the sample's target tokens whose teacher-forced argmax is the true token",
                unit="share of targets", higher="more memorized"),
    "loss": Column("float64", "mean next-token negative log-likelihood, nats (positive)", unit="nats per token",
                   higher="less memorized"),
    "extractable": Column("bool", "greedy decoding from the first k tokens reproduces the next m",
                          higher="memorized (true)"),
    "match_len": Column("int64", "tokens greedy decoding reproduces after the k-token prefix (<= m)", unit="tokens",
                        higher="more memorized"),
    "suffix_loss": Column("float64", "mean negative log-likelihood of the m tokens after the k-token prefix, nats "
                                     "(positive)", unit="nats per token", higher="less memorized"),
    "extraction_applies": Column("bool", "with samples: records: the record has at least k + m tokens, so extractable, "
                                         "match_len and suffix_loss are about it (else false, 0 and NaN)",
                                 higher="long enough (true)"),
}
"""The per-sample columns of `memorization_rows` (--samples-out: `memorization_<name>`)."""


@probe(metrics=METRICS, show=("M", "loss", "extractable"), figures=(fig_memorization,), rows=memorization_rows,
       columns=COLUMNS)
def memorization(rows, lengths, sample_ids, sample_steps, checkpoint, dataset, ledger, k: Positive = 32,
                 m: Positive = 32, per_sample: bool = False):
    """Exact memorization M(f), loss, per-sample M and k-extractability from one teacher-forced pass, reduced per
    sample (so it scales to any number of samples); `per_sample` also lists every sample's values (off by
    default: the report grows with the data; `--samples-out` writes them to Parquet instead)."""
    sample_m, sample_loss = rows["M"], rows["loss"]  # (samples,) each; every sample has seq_len - 1 targets
    if "extraction_applies" in rows:  # whole records: token-weighted, as over fixed-length samples
        return _records_metrics(rows, lengths, sample_ids, sample_steps, checkpoint, dataset, ledger, per_sample)
    loss = float(sample_loss.mean())
    out = {
        "M": float(sample_m.mean()),
        "loss": loss,
        "ppl": math.exp(min(loss, 700.0)),
        "sample_M_mean": float(sample_m.mean()),
        "sample_M_p10": float(np.quantile(sample_m, 0.1)),
        "sample_M_p50": float(np.quantile(sample_m, 0.5)),
        "sample_M_p90": float(np.quantile(sample_m, 0.9)),
        "n_samples": int(len(sample_m)),
        "n_tokens": int(len(sample_m) * (dataset.seq_len - 1)),
        "extractable": None, "n_extractable": None, "match_len_mean": None,  # masked LMs, or samples too short
    }
    if "extractable" in rows:
        out.update(extractable=float(rows["extractable"].mean()), n_extractable=int(rows["extractable"].sum()),
                   match_len_mean=float(rows["match_len"].mean()))
    batch = _batch_rows(sample_ids, sample_steps, checkpoint.step, dataset, ledger)
    if batch:
        out["M_update"] = float(sample_m[batch].mean())
    if per_sample:
        out["samples"] = {"id": list(sample_ids), **rows}
    return out


def _records_metrics(rows, lengths, sample_ids, sample_steps, checkpoint, dataset, ledger, per_sample):
    """The probe's metrics over whole records of varied length: M and loss per target token over all records (a
    long record weighs by its tokens, as every token of fixed-length samples does), per-sample percentiles over
    records, and extraction over the records long enough for a k-token prefix and an m-token suffix (the others
    counted in `n_extraction_not_applicable`, never as not extractable)."""
    targets = (lengths - 1).astype(np.float64)  # (samples,)
    sample_m, applies = rows["M"], rows["extraction_applies"]  # (samples,) each
    loss = float((rows["loss"] * targets).sum() / targets.sum())
    out = {
        "M": float((sample_m * targets).sum() / targets.sum()), "loss": loss, "ppl": math.exp(min(loss, 700.0)),
        "sample_M_mean": float(sample_m.mean()), "sample_M_p10": float(np.quantile(sample_m, 0.1)),
        "sample_M_p50": float(np.quantile(sample_m, 0.5)), "sample_M_p90": float(np.quantile(sample_m, 0.9)),
        "n_samples": int(len(sample_m)), "n_tokens": int(targets.sum()),
        "n_extraction_not_applicable": int((~applies).sum()),
        "extractable": None, "n_extractable": None, "match_len_mean": None,
    }
    if applies.any():
        out.update(extractable=float(rows["extractable"][applies].mean()),
                   n_extractable=int(rows["extractable"][applies].sum()),
                   match_len_mean=float(rows["match_len"][applies].mean()))
    batch = _batch_rows(sample_ids, sample_steps, checkpoint.step, dataset, ledger)
    if batch:
        out["M_update"] = float((sample_m[batch] * targets[batch]).sum() / targets[batch].sum())
    if per_sample:
        out["samples"] = {"id": list(sample_ids), **rows}
    return out


def _batch_rows(sample_ids, sample_steps, step, dataset, ledger) -> list[int]:
    """Samples of the update that produced checkpoint `step`: from the data's `seen_at_step`, or the ledger."""
    if not step:
        return []
    if sample_steps is not None:
        return [int(i) for i in np.flatnonzero(sample_steps == step)]
    if ledger is None or dataset.role != "train":
        return []
    try:
        batch = set(ledger.batch_at(step))
    except KeyError:
        return []
    return [i for i, sid in enumerate(sample_ids) if sid in batch]


SERIES_METRICS = {
    "M": "M at each checkpoint, in step order",
    "steps": "step of each checkpoint",
    "T_step@tau": "first step at which M >= tau (None: never)",
    "T_step_interp@tau": "step at which M crosses tau, interpolated linearly between the checkpoints around the "
                         "crossing (finer than the checkpoint spacing; None: never)",
    "T_epoch@tau": "the same in epochs, when steps per epoch are known",
    "T_checkpoint@tau": "name of that checkpoint",
    "T_update@tau": "first update whose batch reaches M_update >= tau (rolling mean over `smooth` checkpoints)",
    "M_before_overfit": "M on this (train) data set at the checkpoint with the lowest loss on the valid data set",
    "best_valid_step": "step of that checkpoint",
}


def _series_names(taus) -> list[str]:
    """memorization_series' metrics with its thresholds filled in (`T_step@0.9`)."""
    return [name.replace("@tau", f"@{tau}") for name in SERIES_METRICS for tau in (taus if "@tau" in name else [""])]


@series_probe(metrics=SERIES_METRICS, not_numbers=("M", "steps", "T_checkpoint@tau"), show=("M", "T_step@tau", "T_step_interp@tau", "T_epoch@tau", "T_update@tau",
                                            "M_before_overfit", "best_valid_step"), uses=("memorization",),
              figures=(fig_T_vs_params,), names=lambda params, params_of: _series_names(params["taus"]))
def memorization_series(checkpoints, datasets, series, ledger, taus: list[Tau] = (0.5, 0.9), smooth: Positive = 1):
    """T(N, tau), T_update and memorization before overfitting over the series."""
    done = [c for c in checkpoints if "memorization" in c.results]
    steps = [c.step for c in done]
    valid = [d for d in datasets if d.role == "valid"]
    best = None
    if valid:
        losses = [c.metric("memorization", valid[0].name, "loss") for c in done]
        best = done[int(np.argmin(losses))] if losses else None

    out = {}
    for d in datasets:
        per_ckpt = [c.results["memorization"].get(d.name, {}) for c in done]
        curve = [r.get("M") for r in per_ckpt]
        row = {"M": curve, "steps": steps}
        for tau in taus:
            i = _first_at_least(curve, tau)
            row[f"T_step@{tau}"] = steps[i] if i is not None else None
            row[f"T_step_interp@{tau}"] = crossing_step(steps, curve, tau)
            row[f"T_epoch@{tau}"] = _epoch(steps[i], series, ledger) if i is not None else None
            row[f"T_checkpoint@{tau}"] = done[i].name if i is not None else None
            updates = [r.get("M_update") for r in per_ckpt]
            if any(u is not None for u in updates):
                j = _first_at_least(_rolling(updates, smooth), tau)
                row[f"T_update@{tau}"] = steps[j] if j is not None else None
        if best is not None and d.role == "train":
            row["M_before_overfit"] = best.metric("memorization", d.name, "M")
            row["best_valid_step"] = best.step
        out[d.name] = row
    return out


def _first_at_least(values, tau):
    return next((i for i, v in enumerate(values) if v is not None and v >= tau), None)


def _rolling(values, window):
    out = []
    for i in range(len(values)):
        seen = [v for v in values[max(0, i - window + 1):i + 1] if v is not None]
        out.append(sum(seen) / len(seen) if seen and values[i] is not None else None)
    return out


def _epoch(step, series, ledger):
    if step is None:
        return None
    if ledger is not None:
        return ledger.epoch_at(step)
    if series.steps_per_epoch:
        return step / series.steps_per_epoch
    return None
