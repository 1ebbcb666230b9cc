"""Memorization in what the model writes: each selected sample's prefix continued (greedy, and sampled under the
schemes asked) and compared with the sample's true continuation, exactly and approximately.

- exact: the first tokens generated equal the reference token for token (greedy with a reference of m tokens:
  the k-extractable verdict of the teacher-forced pass, sample by sample);
- text_exact: Hubble's `exact_match_tokens` (allegro-lab/hubble, `process_results_gen`): the stripped, lowercased
  texts are equal;
- lcp: the longest common prefix, in tokens;
- rougeL_*: ROUGE-L precision, recall and F1, plain and stemmed, by `rouge_score`, as Hubble's verbatim tasks
  compute them;
- bleu and approx: sentence BLEU (sacrebleu, default settings, on a 0-1 scale) and the share of continuations above
  Ippolito et al. 2023's 0.75, their "approximate memorization";
- edit_similarity: 1 - token edit distance / the longer length.

Opt-in (`probes: {generation: {...}}`): it costs one generation per selected sample, prefix, scheme and draw.
`select:` picks the samples (a seeded random share, or those whose teacher-forced loss or p_z passes a bound), and
the report says which and how many. The generated text goes into the per-sample rows only with `--show-text`.
"""

from __future__ import annotations

import functools
from typing import Annotated

import numpy as np
from pydantic import Field

from memaudit import Column, plots, probe
from memaudit.engine.generations import SamplingScheme, Selection, request_of
from memaudit.errors import ConfigError
from memaudit.names import column_slug
from memaudit.results.values import is_number

APPROX_BLEU = 0.75
"""Ippolito et al. 2023: a continuation whose BLEU against the true suffix exceeds 0.75 is approximately memorized."""
SCORES = ("exact", "text_exact", "lcp", "rougeL_precision", "rougeL_recall", "rougeL_f1", "rougeL_precision_stemmed",
          "rougeL_recall_stemmed", "rougeL_f1_stemmed", "bleu", "approx", "edit_similarity")
MEANINGS = {
    "exact": ("share of continuations whose first tokens equal the reference, token for token", "share"),
    "text_exact": ("share whose stripped, lowercased text equals the reference's (Hubble's exact_match_tokens)",
                   "share"),
    "lcp": ("longest common prefix of continuation and reference", "tokens"),
    "rougeL_precision": ("ROUGE-L precision of the continuation against the reference (rouge_score)", "0-1"),
    "rougeL_recall": ("ROUGE-L recall (rouge_score)", "0-1"),
    "rougeL_f1": ("ROUGE-L F1 (rouge_score)", "0-1"),
    "rougeL_precision_stemmed": ("ROUGE-L precision, Porter-stemmed (rouge_score, use_stemmer=True)", "0-1"),
    "rougeL_recall_stemmed": ("ROUGE-L recall, stemmed", "0-1"),
    "rougeL_f1_stemmed": ("ROUGE-L F1, stemmed", "0-1"),
    "bleu": ("sentence BLEU against the reference (sacrebleu, default settings, divided by 100)", "0-1"),
    "approx": (f"share of continuations with BLEU above {APPROX_BLEU} (Ippolito et al. 2023's approximate "
               "memorization)", "share"),
    "edit_similarity": ("1 - token edit distance between continuation and reference / the longer one's length",
                        "0-1"),
}
METRICS = {
    **{f"{name}[<label>][k=<k>]": (f"mean over the samples generated for: {meaning} ({unit}; a sample's value is its "
                                   "mean over draws)") for name, (meaning, unit) in MEANINGS.items()},
    "n_generated[k=<k>]": "samples generated for with a k-token prefix (selected, and with at least one token after "
                          "the prefix)",
    "n_not_selected[k=<k>]": "samples long enough but left out by `select`",
    "n_too_short[k=<k>]": "samples with no token after a k-token prefix (nothing to compare with), or no room for one "
                          "in the window: not generated for",
    "selection": "which samples were generated for, in words",
    "labels": "the decoding schemes, in order (`greedy`, then each sampling scheme's label)",
}


def column(score: str, label: str, k: int) -> str:
    """The rows column of one score under one decoding scheme and prefix length."""
    return f"{score}__{column_slug(label)}__k{k}"


def generated_column(k: int) -> str:
    """The rows column saying which samples were generated for with a k-token prefix."""
    return f"generated__k{k}"


def applies_column(k: int) -> str:
    """The rows column saying which samples have tokens after a k-token prefix (something to compare with)."""
    return f"applies__k{k}"


def text_column(label: str, k: int) -> str:
    """The rows column of the (first) continuation's text, with --show-text."""
    return f"text__{column_slug(label)}__k{k}"


# comparisons, vectorised over samples --------------------------------------------------------------------------


def common_prefix(made: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Longest common prefix (samples,) of token rows (-1 padded) of continuation and reference."""
    width = min(made.shape[1], reference.shape[1])
    same = (made[:, :width] == reference[:, :width]) & (reference[:, :width] >= 0)  # (samples, width)
    return np.cumprod(same, axis=1).sum(axis=1)


def edit_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Levenshtein distance (samples,) between token rows a (samples, La) and b (samples, Lb), -1 padded: one
    numpy step per position of a, the insertions along b as a running minimum (D[i, j] = j + min over j' <= j of
    C[j'] - j', C the substitution and deletion candidates)."""
    la, lb = (a >= 0).sum(axis=1), (b >= 0).sum(axis=1)  # (samples,)
    n, width = len(a), b.shape[1]
    j = np.arange(width + 1)  # (Lb + 1,)
    row = np.broadcast_to(j, (n, width + 1)).astype(np.int64)  # D[0, j] = j
    out = np.where(la == 0, lb, 0).astype(np.int64)
    for i in range(1, a.shape[1] + 1):
        cost = (a[:, i - 1:i] != b).astype(np.int64)  # (samples, Lb)
        candidates = np.empty_like(row)
        candidates[:, 0] = i
        candidates[:, 1:] = np.minimum(row[:, 1:] + 1, row[:, :-1] + cost)
        row = j + np.minimum.accumulate(candidates - j, axis=1)  # (samples, Lb + 1)
        ends = la == i
        out[ends] = row[ends, lb[ends]]
    return out


def edit_similarity(made: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """1 - edit distance / the longer length (samples,); 1 when both are empty."""
    longer = np.maximum((made >= 0).sum(axis=1), (reference >= 0).sum(axis=1))
    return np.where(longer > 0, 1.0 - edit_distance(made, reference) / np.maximum(longer, 1), 1.0)


@functools.cache
def rouge_scorers():
    """Hubble's two ROUGE-L scorers (plain and stemmed)."""
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False), rouge_scorer.RougeScorer(["rougeL"],
                                                                                              use_stemmer=True)


def text_scores(made: list[str], reference: list[str]) -> dict[str, np.ndarray]:
    """ROUGE-L (plain, stemmed), BLEU and Hubble's text exact match (samples,) of each continuation against its
    reference, stripped as Hubble strips them, by the reference libraries themselves."""
    from sacrebleu.metrics import BLEU

    plain, stemmed = rouge_scorers()
    bleu = BLEU(effective_order=True)
    out = {name: np.empty(len(made)) for name in SCORES if name.startswith(("rougeL", "bleu", "text_exact"))}
    for i, (m, r) in enumerate(zip(made, reference)):  # the libraries score one pair at a time
        m, r = m.strip(), r.strip()
        for suffix, scorer in (("", plain), ("_stemmed", stemmed)):
            s = scorer.score(r, m)["rougeL"]
            out[f"rougeL_precision{suffix}"][i], out[f"rougeL_recall{suffix}"][i] = s.precision, s.recall
            out[f"rougeL_f1{suffix}"][i] = s.fmeasure
        out["bleu"][i] = bleu.sentence_score(m, [r]).score / 100
        out["text_exact"][i] = float(m.lower() == r.lower())
    return out


def generation_rows(generations, lengths) -> dict[str, np.ndarray]:
    """Per sample, prefix and scheme: every score of SCORES (mean over draws; NaN for samples not generated for),
    which samples were generated for, and with --show-text the first continuation's text."""
    if generations is None:  # a masked LM
        return {}
    request, n = generations.request, len(generations.tokens)
    out = {}
    for k in request.prefixes:
        chosen = generations.selected[k]  # (samples,)
        rows = np.flatnonzero(chosen)
        out[generated_column(k)], out[applies_column(k)] = chosen, generations.applies[k]
        reference = generations.references(k)[rows]  # (rows, width)
        ref_len = (reference >= 0).sum(axis=1)
        ref_text = generations.decode(reference) if len(rows) else []
        for label in request.labels:
            made = generations.made[label, k][rows]  # (rows, draws, new)
            totals = {name: np.zeros(len(rows)) for name in SCORES}
            for j in range(made.shape[1]):
                draw = made[:, j].astype(np.int64)  # (rows, new)
                lcp = common_prefix(draw, reference)
                texts = generations.decode(draw) if len(rows) else []
                scores = {"exact": (lcp == ref_len).astype(float), "lcp": lcp.astype(float),
                          "edit_similarity": edit_similarity(draw, reference), **text_scores(texts, ref_text)}
                scores["approx"] = (scores["bleu"] > APPROX_BLEU).astype(float)
                for name in SCORES:
                    totals[name] += scores[name]
                if j == 0 and generations.show is not None:
                    text = np.full(n, "", dtype=object)
                    text[rows] = [generations.show(t) for t in texts]
                    out[text_column(label, k)] = text.astype(str)
            for name in SCORES:
                values = np.full(n, np.nan)
                values[rows] = totals[name] / max(made.shape[1], 1)
                out[column(name, label, k)] = values
    return out


def _names(params: dict, params_of: dict | None = None) -> list[str]:
    """Every metric the probe reports with these parameters, in order."""
    request = request_of(params)
    out = ["labels", "selection"]
    for k in request.prefixes:
        out += [f"n_generated[k={k}]", f"n_not_selected[k={k}]", f"n_too_short[k={k}]"]
        out += [f"{name}[{label}][k={k}]" for label in request.labels for name in SCORES]
    return out


def _validate(params: dict, config) -> None:
    request = request_of(params)
    if not request.labels:
        raise ConfigError("Probe 'generation': with greedy: false, name at least one sampling scheme under "
                          "'schemes:' (e.g. [{temperature: 1.0}]), or leave greedy on: there is nothing to generate.")
    if len(set(request.prefixes)) != len(request.prefixes):
        raise ConfigError(f"Probe 'generation': prefixes {list(request.prefixes)} repeat a length: give each once.")
    if len({s.label for s in request.schemes}) != len(request.schemes):
        raise ConfigError("Probe 'generation': two schemes under 'schemes:' are the same scheme: give each once.")
    for d in config.datasets:  # a prompt must leave room to write in the window (a prefix token may come first)
        if d.role != "canary" and max(request.prefixes) + 1 >= d.seq_len:
            raise ConfigError(f"Probe 'generation': prefix length {max(request.prefixes)} leaves no room to write in "
                              f"data set '{d.name}' (seq_len {d.seq_len}: a prompt and its continuation fit in it). "
                              f"Use prefixes below {d.seq_len - 1}, or a longer seq_len.")
    require_scorers()


def require_scorers() -> None:
    """rouge_score and sacrebleu, the reference implementations the scores come from, must be installed."""
    import importlib.util

    missing = [name for name in ("rouge_score", "sacrebleu") if importlib.util.find_spec(name) is None]
    if missing:
        raise ConfigError(f"Probe 'generation' scores continuations with {' and '.join(missing)}, which "
                          f"{'is' if len(missing) == 1 else 'are'} not installed. Install them with "
                          "`pip install 'memaudit-lm[generation]'`, or deselect the probe.")


def fig_generation(report):
    """ROUGE-L F1 of the continuations (the first scheme, greedy when asked, at the first prefix length) against the
    group value (Hubble's duplication level) at each series' last checkpoint (left), and over checkpoints per data
    set (right)."""
    probe = next((p for p in report.probes if p.name == "generation"), None)
    if probe is None:
        return None
    request = request_of(probe.params)
    metric = f"rougeL_f1[{request.labels[0]}][k={request.prefixes[0]}]"
    groups = {d.name: d for d in report.datasets if d.group is not None and is_number(d.group.value)
              and not isinstance(d.group.value, bool)}
    curves = [(s, d, xs, ys) for s, d, xs, ys in plots.series_curves(report, "generation", metric) if d not in groups]
    dose = {}  # (series, data set) -> {level: value at the last checkpoint}
    for s in report.series:
        last = next((c for c in reversed(s.checkpoints) if c.results.get("generation")), None)
        for name, d in groups.items():
            value = (last.results["generation"].get(name) or {}).get(metric) if last else None
            if value is not None:
                dose.setdefault((s.name, d.group_of), {})[float(d.group.value)] = value
    if not curves and not dose:
        return None
    plt = plots.pyplot()
    fig, axes = plt.subplots(1, bool(dose) + bool(curves), figsize=(5.5 * (bool(dose) + bool(curves)), 4),
                             squeeze=False)
    panels = iter(axes[0])  # only the panels with something to draw
    if dose:
        left = next(panels)
        for i, ((series, data), points) in enumerate(sorted(dose.items())):
            levels = sorted(points)
            left.plot(levels, [points[v] for v in levels], marker="o", color=plots.PALETTE[i % len(plots.PALETTE)],
                      label=f"{series} · {data}")
        left.set_xscale("symlog", linthresh=1)
        left.set_xlabel("group value (duplication level)")
        left.set_ylabel(f"ROUGE-L F1 ({request.labels[0]}, k={request.prefixes[0]})")
        left.legend(fontsize=7)
    if curves:
        right = next(panels)
        for i, (s, d, xs, ys) in enumerate(curves):
            right.plot(xs, ys, marker="o", markersize=3, color=plots.PALETTE[i % len(plots.PALETTE)],
                       label=f"{s.name} · {d}")
        plots.step_axis(right, [x for _, _, xs, _ in curves for x in xs])
        right.set_ylabel("ROUGE-L F1 of the continuation")
        right.legend(fontsize=7)
    fig.suptitle("What the model writes after a training prefix")
    fig.tight_layout()
    return fig


Prefix = Annotated[int, Field(ge=1)]
EVERY_SAMPLE = Selection()


@probe(metrics=METRICS, opt_in=True, names=_names, validate=_validate, rows=generation_rows,
       not_numbers=("labels", "selection"), figures=(fig_generation,),
       show=("n_generated[k=<k>]", "exact[<label>][k=<k>]", "rougeL_f1[<label>][k=<k>]", "approx[<label>][k=<k>]"),
       columns={
           "generated__k<k>": Column("bool", "the sample was generated for with a k-token prefix (selected by "
                                             "`select`, with tokens after the prefix)", higher="generated (true)"),
           "applies__k<k>": Column("bool", "the sample has tokens after a k-token prefix (a reference to compare "
                                           "with) and room for them in the window", higher="long enough (true)"),
           **{f"{name}__<label>__k<k>": Column("float64", meaning + " (mean over draws; NaN: not generated for)",
                                               unit=unit, higher="more memorized")
              for name, (meaning, unit) in MEANINGS.items()},
           "text__<label>__k<k>": Column("string", "the first continuation's text (only with --show-text; redacted "
                                                   "as the run redacts sample text)")})
def generation(rows, prefixes: Annotated[list[Prefix], Field(min_length=1)] = (32,),
               new_tokens: Annotated[int, Field(ge=1, le=4096)] | None = None, until_eos: bool = True,
               greedy: bool = True, schemes: list[SamplingScheme] = (), n: Annotated[int, Field(ge=1, le=1000)] = 1,
               seed: Annotated[int, Field(ge=0)] = 0, select: Selection = EVERY_SAMPLE):
    """Continuations of each selected sample's prefix (greedy, and `n` draws per sampling scheme), scored against
    the sample's next tokens: exact match, longest common prefix, ROUGE-L, BLEU and Ippolito's approximate
    memorization, edit similarity. Runs when the yaml's `probes:` names it."""
    request = request_of({"prefixes": prefixes, "new_tokens": new_tokens, "until_eos": until_eos, "greedy": greedy,
                          "schemes": schemes, "n": n, "seed": seed, "select": select})
    if generated_column(request.prefixes[0]) not in rows:  # a masked LM: nothing generated
        return {}
    out: dict = {"labels": request.labels, "selection": request.select.describe()}
    for k in request.prefixes:
        chosen = rows[generated_column(k)]
        out[f"n_generated[k={k}]"] = int(chosen.sum())
        out[f"n_not_selected[k={k}]"] = int((rows[applies_column(k)] & ~chosen).sum())
        out[f"n_too_short[k={k}]"] = int((~rows[applies_column(k)]).sum())
        for label in request.labels:
            for name in SCORES:
                values = rows[column(name, label, k)][chosen]
                out[f"{name}[{label}][k={k}]"] = float(values.mean()) if len(values) else None
    return out
