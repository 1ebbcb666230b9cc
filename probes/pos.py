"""Part of speech: which word classes a checkpoint memorizes first (Tirumala et al. 2022, sec. 5).

R(p) = correctly predicted target positions whose word has tag p / target positions with tag p.
Tags are spaCy's universal POS tags of the word holding each target token (see memaudit.inputs.tagging);
NONE counts tokens with no word (whitespace, special tokens) apart, UNK WikiText's `<unk>`.
"""

from __future__ import annotations

from typing import Annotated

import numpy as np
from pydantic import Field

from memaudit import plots, probe, series_probe
from memaudit.inputs.tagging import TAGS

CONTENT_FIRST = ("NOUN", "PROPN", "NUM")
CONTENT_LATER = ("VERB", "ADJ")
NOT_WORD_CLASSES = ("NONE", "UNK", "SPACE")



def fig_pos(report, tags=("NOUN", "PROPN", "NUM", "VERB", "ADJ", "ADP", "DET", "PUNCT")):
    """R(p) over checkpoints per word class, a panel per series: look for nouns, proper nouns and numbers
    (thick) rising before verbs and adjectives."""
    panels = []
    for s in report.series:
        train = [d.name for d in report.datasets if d.role == "train"]
        for d in train:
            curves = {t: [(c.step, c.results["pos"][d]["R"].get(t)) for c in s.checkpoints
                          if c.step is not None and d in c.results.get("pos", {})] for t in tags}
            curves = {t: [(x, y) for x, y in pts if y is not None] for t, pts in curves.items()}
            if any(curves.values()):
                panels.append((s.name, d, curves))
    if not panels:
        return None
    plt = plots.pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.8), squeeze=False, sharey=True)
    for ax, (name, d, curves) in zip(axes[0], panels):
        for i, (tag, pts) in enumerate(curves.items()):
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], color=plots.PALETTE[i % len(plots.PALETTE)],
                        linestyle=plots.LINESTYLES[i // len(plots.PALETTE) % len(plots.LINESTYLES)] if tag not in ("NOUN", "PROPN", "NUM")
                        else "-", linewidth=2 if tag in ("NOUN", "PROPN", "NUM") else 1.2, label=tag)
        plots.step_axis(ax, [x for pts in curves.values() for x, _ in pts])
        ax.set_title(f"{name} · {d}", fontsize=10)
    axes[0][0].set_ylabel("R(p): share of positions memorized")
    axes[0][-1].legend(fontsize=7, loc="lower right")
    fig.suptitle("Memorization by part of speech")
    fig.tight_layout()
    return fig


@probe(metrics={"R": "tag -> share of its target positions predicted exactly (argmax hit)",
                "count": "tag -> number of target positions with that tag"}, show=("R",), figures=(fig_pos,))
def pos(hits, pos_tags, lengths, min_count: Annotated[int, Field(ge=1)] = 1):
    """R(p) and position counts for every tag present. Whole records (`lengths`): the padding after each record is
    tagged -1, which no tag counts."""
    rates, counts = {}, {}
    for i, tag in enumerate(TAGS):
        mask = pos_tags == i  # (samples, seq_len - 1)
        n = int(mask.sum())
        if n >= max(1, min_count):
            counts[tag] = n
            rates[tag] = float(hits[mask].mean())
    return {"R": rates, "count": counts}


@series_probe(metrics={"T_step": "tag -> first step at which R(tag) >= tau (None: never)",
                       "order": "word classes in the order they reach tau (never-reached last)",
                       "nouns_numbers_first": "NOUN, PROPN and NUM reach tau (on average) before VERB and ADJ"},
              show=("T_step", "nouns_numbers_first"), uses=("pos",))
def pos_series(checkpoints, datasets, tau: Annotated[float, Field(ge=0, le=1)] = 0.5):
    """Per tag, the first checkpoint where R(p) >= tau, and the order in which tags get there."""
    done = [c for c in checkpoints if "pos" in c.results]
    out = {}
    for d in datasets:
        curves: dict[str, list] = {}
        for c in done:
            for tag, r in (c.metric("pos", d.name, "R") or {}).items():
                curves.setdefault(tag, [None] * len(done))[done.index(c)] = r
        first = {tag: next((done[i].step for i, r in enumerate(curve) if r is not None and r >= tau), None)
                 for tag, curve in curves.items() if tag != "NONE"}
        classes = [t for t in TAGS if t in first and t not in NOT_WORD_CLASSES]
        never = float("inf")
        order = sorted(classes, key=lambda t: (first[t] if first[t] is not None else never, TAGS.index(t)))

        def mean_step(group):
            steps = [first[t] if first[t] is not None else never for t in group if t in first]
            return float(np.mean(steps)) if steps else None

        early, late = mean_step(CONTENT_FIRST), mean_step(CONTENT_LATER)
        out[d.name] = {"T_step": first, "order": order,
                       "nouns_numbers_first": None if early is None or late is None or early == late == never
                       else bool(early < late)}
    return out
