"""Extraction risk beyond greedy decoding: (n, p)-discoverable extraction (Hayes et al. 2024,
"Measuring memorization in language models via probabilistic extraction", arXiv 2410.19482).

With prefix a (k tokens) and suffix b (m tokens) of a training sample z, one sampled continuation
reproduces b exactly with probability p_z = prod_t P_scheme(b_t | a, b_<t); z is (n, p)-extractable
when 1 - (1 - p_z)^n >= p, that is when n queries find it with probability at least p. Every factor
is read off the teacher-forced pass (memaudit.engine.sampling): no generation.
"""

from __future__ import annotations

import math
from typing import Annotated

import numpy as np
from pydantic import Field

from memaudit import Column, plots, probe, series_probe
from memaudit.engine.sampling import SamplingScheme
from memaudit.measures import DEFAULT_SCHEMES, extractable_samples, log_pz, record_split
from memaudit.names import column_slug

Pair = Annotated[list[Annotated[int, Field(ge=1)]], Field(min_length=2, max_length=2)]
Probability = Annotated[float, Field(gt=0, le=1)]
METRICS = {
    "rate[<scheme>][k=<k>,m=<m>][n=<n>,p=<p>]": "share of samples (n, p)-extractable under the scheme",
    "n_extractable[<scheme>][k=<k>,m=<m>][n=<n>,p=<p>]": "number of samples (n, p)-extractable",
    "log10_pz_p50[<scheme>][k=<k>,m=<m>]": "median over samples of log10 p_z (p_z: one sample reproduces the suffix; "
                                           "null when that p_z is exactly 0, e.g. a token top-k excludes: log10 is "
                                           "-infinity, which JSON writes as null)",
    "log10_pz_p90[<scheme>][k=<k>,m=<m>]": "90th percentile of log10 p_z (null when that p_z is exactly 0)",
    "log10_pz_max[<scheme>][k=<k>,m=<m>]": "largest log10 p_z (null when every p_z is exactly 0)",
    "log10_queries_p50[<scheme>][k=<k>,m=<m>][p=<p>]": "median log10 of the queries a sample needs to be found "
                                                       "with probability p (null: never)",
    "greedy_rate[k=<k>,m=<m>]": "share of samples greedy decoding reproduces (the k-extractable verdict)",
    "n_not_applicable[k=<k>,m=<m>]": "with samples: records: records shorter than k + m tokens, left out of the "
                                     "pair's rates (neither extractable nor not)",
    "schemes": "the schemes' labels, in order",
}





def extractable(logp: np.ndarray, n: int, p: float) -> np.ndarray:
    """Whether 1 - (1 - p_z)^n >= p, in log space: p_z = 1 always, p_z = 0 never."""
    pz = np.exp(logp)
    with np.errstate(divide="ignore"):
        miss_all = n * np.log1p(-np.minimum(pz, 1.0))  # log (1 - p_z)^n
    return (pz >= 1.0) | (miss_all <= math.log1p(-p) if p < 1 else pz >= 1.0)


def queries_needed(logp: np.ndarray, p: float) -> np.ndarray:
    """Smallest n with 1 - (1 - p_z)^n >= p per sample (inf when p_z = 0)."""
    pz = np.exp(logp)
    with np.errstate(divide="ignore", invalid="ignore"):
        n = np.ceil(math.log1p(-p) / np.log1p(-np.minimum(pz, 1.0))) if p < 1 else np.where(pz >= 1, 1.0, np.inf)
    return np.where(pz >= 1.0, 1.0, np.where(pz <= 0.0, np.inf, np.maximum(n, 1.0)))


def fig_extraction(report):
    """Share of samples (n, p)-extractable against the number of sampled queries n, per scheme, for the
    largest series: where a line climbs above its dotted greedy rate, sampling finds samples greedy misses."""
    audited = [s for s in report.series if any("extraction_risk" in c.results for c in s.checkpoints)]
    if not audited:
        return None
    series = max(audited, key=lambda s: s.n_params or 0)
    rows = [(c, d, r) for c in series.checkpoints for d, r in c.results.get("extraction_risk", {}).items()
            if r.get("schemes") and d != "all"]
    train = [(c, r) for c, d, r in rows if d == "train"] or [(c, r) for c, _, r in rows]
    if not train:
        return None
    train = [train[round(i * (len(train) - 1) / 5)] for i in range(6)] if len(train) > 6 else train
    schemes = train[0][1]["schemes"]
    plt = plots.pyplot()
    fig, axes = plt.subplots(1, len(schemes), figsize=(4.4 * len(schemes), 3.8), squeeze=False, sharey=True)
    for ax, scheme in zip(axes[0], schemes):
        for i, (c, r) in enumerate(train):
            keys = sorted((int(key.split("n=")[1].split(",")[0]), key) for key in r
                          if key.startswith(f"rate[{scheme}]") and r[key] is not None)
            if not keys:
                continue
            color = plots.PALETTE[i % len(plots.PALETTE)]
            ax.plot([n for n, _ in keys], [r[key] for _, key in keys], marker="o", markersize=3, color=color,
                    label=c.name)
            greedy = next((v for key, v in r.items() if key.startswith("greedy_rate") and v is not None), None)
            if greedy is not None:
                ax.axhline(greedy, color=color, linestyle=":", linewidth=1)
        ax.set_xscale("log")
        ax.set_xlabel("queries n")
        ax.set_title(scheme, fontsize=10)
    axes[0][0].set_ylabel("share of samples (n, p)-extractable")
    axes[0][-1].legend(fontsize=7)
    fig.suptitle(f"Extraction risk under sampling ({series.name}; dotted: greedy)")
    fig.tight_layout()
    return fig


def _names(params: dict, params_of: dict | None = None) -> list[str]:
    """Every metric extraction_risk reports with these parameters, in the order it reports them."""
    labels = [SamplingScheme.model_validate(s).label for s in params["schemes"]]
    out = ["schemes"]
    for k, m in params["pairs"]:
        pair = f"k={k},m={m}"
        out += [f"greedy_rate[{pair}]", f"n_not_applicable[{pair}]"]
        for label in labels:
            out += [f"log10_pz_{q}[{label}][{pair}]" for q in ("p50", "p90", "max")]
            for prob in params["p"]:
                out.append(f"log10_queries_p50[{label}][{pair}][p={prob:g}]")
                for count in params["n"]:
                    out += [f"{what}[{label}][{pair}][n={count},p={prob:g}]" for what in ("rate", "n_extractable")]
    return out


def pz_column(label: str, k: int, m: int) -> str:
    """The rows column of per-sample log10 p_z under a scheme and a (k, m) pair."""
    return f"log10_pz__{column_slug(label)}__k{k}_m{m}"


def greedy_column(k: int, m: int) -> str:
    """The rows column of the per-sample greedy verdict for a (k, m) pair."""
    return f"greedy__k{k}_m{m}"


def applies_column(k: int, m: int) -> str:
    """The rows column saying which whole records (`samples: records`) have k + m tokens for a (k, m) pair."""
    return f"applies__k{k}_m{m}"


def extraction_rows(sampling_logprobs, hits, checkpoint, lengths, dataset, schemes, pairs) -> dict[str, np.ndarray]:
    """Per sample, for each (k, m) pair the samples are long enough for: the greedy verdict and, per scheme,
    log10 p_z (float64; -inf when p_z is exactly 0). Nothing for a masked LM. Whole records (`lengths`): the
    prefix and suffix start at each record's first token, and a record shorter than k + m has `applies` false,
    greedy false and NaN p_z (left out of the rates, never counted as not extractable)."""
    if getattr(checkpoint, "objective", "causal") != "causal":
        return {}
    out = {}
    for k, m in pairs:
        first, applies = (0, None) if lengths is None else record_split(lengths, dataset, k, m)
        if hits.shape[1] < first + k + m - 1:
            if applies is not None:  # no record is long enough: each says so
                out[applies_column(k, m)] = np.zeros(len(lengths), dtype=bool)
            continue
        greedy = extractable_samples(hits[:, first:], k, m)[0]  # (samples,)
        out[greedy_column(k, m)] = greedy if applies is None else greedy & applies
        if applies is not None:
            out[applies_column(k, m)] = applies
        for scheme in schemes:
            label = SamplingScheme.model_validate(scheme).label
            log10 = log_pz(sampling_logprobs[label][:, first:], k, m) / math.log(10)  # (samples,)
            out[pz_column(label, k, m)] = log10 if applies is None else np.where(applies, log10, np.nan)
    return out


@probe(metrics=METRICS, not_numbers=("schemes",), show=("greedy_rate[k=<k>,m=<m>]", "log10_pz_max[<scheme>][k=<k>,m=<m>]"),
       figures=(fig_extraction,), names=_names, rows=extraction_rows, columns={
           "log10_pz__<scheme>__k<k>_m<m>": Column(
               "float64", "log10 p_z: the chance that one continuation sampled under the scheme reproduces the m-token "
               "suffix after the k-token prefix (-inf: p_z is exactly 0, e.g. a token top-k excludes)",
               unit="log10 probability", higher="more extractable"),
           "greedy__k<k>_m<m>": Column("bool", "greedy decoding from the first k tokens reproduces the next m (the "
                                               "k-extractable verdict)", higher="extractable (true)"),
           "applies__k<k>_m<m>": Column("bool", "with samples: records: the record has k + m tokens of its own, so the "
                                                "pair's greedy verdict and p_z are about it", higher="long enough (true)")})
def extraction_risk(rows, checkpoint, schemes: list[SamplingScheme] = DEFAULT_SCHEMES,
                    pairs: list[Pair] = ([32, 32],), n: list[Annotated[int, Field(ge=1)]] = (1, 10, 100, 1000),
                    p: list[Probability] = (0.5,)):
    """(n, p)-discoverable extraction rates under each sampling scheme, p_z percentiles and greedy verdicts
    (the metrics `_names` lists, for the pairs short enough for the samples), from per-sample log10 p_z (so at
    any scale; `--samples-out` writes them)."""
    if getattr(checkpoint, "objective", "causal") != "causal":
        return {}
    labels = [SamplingScheme.model_validate(s).label for s in schemes]
    out: dict = {"schemes": labels}
    for k, m in pairs:
        pair = f"k={k},m={m}"
        applies = rows.get(applies_column(k, m))  # whole records: those with k + m tokens of their own
        if applies is not None:
            out[f"n_not_applicable[{pair}]"] = int((~applies).sum())
        if greedy_column(k, m) not in rows or (applies is not None and not applies.any()):  # too short for k + m
            continue
        pick = slice(None) if applies is None else applies
        out[f"greedy_rate[{pair}]"] = float(rows[greedy_column(k, m)][pick].mean())
        for label in labels:
            log10 = rows[pz_column(label, k, m)][pick]  # (samples,)
            logp = log10 * math.log(10)
            out[f"log10_pz_p50[{label}][{pair}]"] = float(np.percentile(log10, 50, method="nearest"))
            out[f"log10_pz_p90[{label}][{pair}]"] = float(np.percentile(log10, 90, method="nearest"))
            out[f"log10_pz_max[{label}][{pair}]"] = float(log10.max())
            for prob in p:
                queries = np.log10(queries_needed(logp, prob))  # (samples,), inf where never
                median = np.percentile(queries, 50, method="nearest")  # a rank: no arithmetic on inf
                out[f"log10_queries_p50[{label}][{pair}][p={prob:g}]"] = float(median)
                for count in n:
                    found = extractable(logp, count, prob)
                    out[f"rate[{label}][{pair}][n={count},p={prob:g}]"] = float(found.mean())
                    out[f"n_extractable[{label}][{pair}][n={count},p={prob:g}]"] = int(found.sum())
    return out


@series_probe(metrics={"first_step[<rate>]": "first step at which the rate is above 0 (some sample is extractable)"},
              uses=("extraction_risk",),
              names=lambda params, params_of: [f"first_step[{name}]" for name in _names(params_of["extraction_risk"])
                                               if name.startswith("rate[")])
def extraction_risk_series(checkpoints, datasets):
    """Per rate of extraction_risk, the first step at which some sample is (n, p)-extractable."""
    out = {}
    for d in datasets:
        rates = {}
        for c in checkpoints:
            for key, value in (c.results.get("extraction_risk") or {}).get(d.name, {}).items():
                if key.startswith("rate[") and value:
                    rates.setdefault(key, c.step)
        if any((c.results.get("extraction_risk") or {}).get(d.name) for c in checkpoints):
            out[d.name] = {f"first_step[{key}]": step for key, step in rates.items()}
    return out
