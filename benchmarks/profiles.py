"""Memorization profiles at scale: seconds and peak memory of memorization_profile on a panel as an audit builds it.

    python benchmarks/profiles.py --paper [--out benchmarks/results/profiles-cpu]   # Lesci et al.'s design
    python benchmarks/profiles.py [--samples 1000000] [--checkpoints 20] [--control 0.1] [--draws 999]

`--paper` is the design of Lesci et al. (2024) on Pythia: 14,300 training sequences (100 from each 1,000-step
macro-cohort, a sequence's step from its index in the pre-shuffled order: ceil(index / 1024)) and 2,000 held-out
sequences, over 144 checkpoints (steps 0, 1,000, ..., 143,000), `cohort_steps: 1000`: 143 cohorts, ~20,000
ATT(g, t) of which ~10,000 are placebos. The other mode is a panel of many samples over a few checkpoints.

Either way the per-sample panel is built as an audit does (memaudit.engine.panel.Panel: each checkpoint's
per-sample columns written as they come), with a planted effect of 0.3 from each sample's training step on,
then memorization_profile runs as in a run: every ATT(g, t) with analytic and bootstrap standard errors and the
band over all of them, the event-time, calendar-time, cohort and overall aggregations, the residual, the Wald
and sup-t pre-trend tests, with `--draws` bootstrap draws. Prints the seconds of each part, the process's peak
RSS (VmHWM) and the instantaneous estimate against the planted value; `--out` writes <out>.json and <out>.md.
The forward passes are not part of it (benchmarks/streaming.py measures them).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def peak_mib() -> float:
    """This process's peak resident memory (VmHWM) in MiB."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024


def paper_design(rng, per_cohort: int, n_valid: int, n_checkpoints: int):
    """Lesci et al.'s panel: `per_cohort` sequences from each 1,000-step macro-cohort, their training steps from
    their indices in the pre-shuffled order (1,024 sequences per step), checkpoints every 1,000 steps from 0."""
    steps = [1000 * t for t in range(n_checkpoints)]
    cohorts = np.repeat(np.arange(1, n_checkpoints) * 1000, per_cohort)  # (treated,) the cohort's last step
    index = rng.integers((cohorts - 1000) * 1024 + 1, cohorts * 1024 + 1)  # a sequence of the cohort's steps
    return steps, np.ceil(index / 1024), n_valid, {"cohort_steps": 1000}


def spread_design(rng, n: int, n_checkpoints: int, control: float):
    """Many samples over few checkpoints: training steps uniform over the series, a `control` share held out."""
    steps = [100 * t for t in range(n_checkpoints)]
    n_control = int(n * control)
    return steps, rng.integers(1, steps[-1] + 1, n - n_control).astype(np.float64), n_control, {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--paper", action="store_true", help="Lesci et al.'s design (14,300 + 2,000 x 144)")
    parser.add_argument("--per-cohort", type=int, default=100, help="--paper: sequences per macro-cohort")
    parser.add_argument("--samples", type=int, default=1_000_000)
    parser.add_argument("--checkpoints", type=int, default=None, help="default: 144 with --paper, else 20")
    parser.add_argument("--control", type=float, default=0.1, help="the share of held-out samples")
    parser.add_argument("--valid", type=int, default=2000, help="--paper: held-out sequences")
    parser.add_argument("--draws", type=int, default=999)
    parser.add_argument("--out", type=Path, default=None, help="write <out>.json and <out>.md (a results table)")
    args = parser.parse_args()

    from memaudit.engine.panel import Panel
    from memaudit.probes.profile import memorization_profile

    rng = np.random.default_rng(0)
    if args.paper:
        steps, trained_at, n_control, params = paper_design(rng, args.per_cohort, args.valid, args.checkpoints or 144)
    else:
        steps, trained_at, n_control, params = spread_design(rng, args.samples, args.checkpoints or 20, args.control)
    n_train = len(trained_at)
    samples = {"train": SimpleNamespace(ids=range(n_train), steps=trained_at),
               "valid": SimpleNamespace(ids=range(n_control), steps=None)}
    panel = Panel(samples, {"memorization"})
    t0 = time.perf_counter()
    level = rng.normal(0, 1, n_train + n_control).astype(np.float32)  # each sample's own level
    for t, step in enumerate(steps):  # one checkpoint's columns at a time, as the run adds them
        y = level + 0.05 * t + rng.normal(0, 0.5, len(level)).astype(np.float32)
        y[:n_train] += np.where(step >= trained_at, 0.3, 0.0).astype(np.float32)  # planted effect of training
        panel.add(f"step-{step}", step, {"memorization": {"train": {"loss": -y[:n_train]},
                                                          "valid": {"loss": -y[n_train:]}}})
    del level, y
    built = time.perf_counter() - t0
    datasets = [SimpleNamespace(name="train", role="train"), SimpleNamespace(name="valid", role="valid")]
    t0 = time.perf_counter()
    result = memorization_profile.fn(panel, {}, {}, SimpleNamespace(name="bench"), datasets, None, draws=args.draws,
                                     **params)["train"]
    estimated = time.perf_counter() - t0
    panel.close()
    placebos = sum(a["step"] < a["cohort_step"] for a in result["att"])
    row = {"design": "Lesci et al. (--paper)" if args.paper else "spread", "treated": result["n_treated"],
           "held_out": result["n_control"], "checkpoints": len(steps), "cohorts": len(result["cohort_steps"]),
           "cells": len(result["att"]), "placebos": placebos, "draws": args.draws, "build_s": round(built, 2),
           "estimate_s": round(estimated, 2), "peak_mib": round(peak_mib()), "instantaneous": result["instantaneous"],
           "instantaneous_lo": result["instantaneous_lo"], "instantaneous_hi": result["instantaneous_hi"],
           "n_significant": result["n_significant"], "pretrend_event_p": result["pretrend_event_p"],
           "pretrend_sup_p": result["pretrend_sup_p"],
           "pretrend_p": result["pretrend_p"], "pretrend_note": result.get("pretrend_note")}
    print(f"panel {row['treated']:,} trained + {row['held_out']:,} held-out samples x {len(steps)} checkpoints: "
          f"{row['cohorts']} cohorts, {row['cells']:,} ATT(g, t) ({placebos:,} placebos)")
    print(f"building the panel   {built:8.1f} s")
    print(f"profile estimate     {estimated:8.1f} s  (with {args.draws} bootstrap draws)")
    print(f"peak RSS             {row['peak_mib']:8.0f} MiB")
    print(f"instantaneous        {result['instantaneous']:.4f} [{result['instantaneous_lo']:.4f}, "
          f"{result['instantaneous_hi']:.4f}] (planted 0.3000); {result['n_significant']:,} cells significant; "
          f"pre-trend p: event-time {result['pretrend_event_p']:.3f}, sup-t {result['pretrend_sup_p']:.3f}; Wald over "
          "every cell: " + (f"p = {result['pretrend_p']:.3f}" if result["pretrend_p"] is not None
                            else result.get("pretrend_note", "")))
    if args.out is not None:
        import platform

        versions = {"date": time.strftime("%Y-%m-%d"), "numpy": np.__version__, "python": sys.version.split()[0],
                    "device": platform.processor() or platform.machine(), "cpus": os.cpu_count()}
        args.out.with_suffix(".json").write_text(json.dumps({**versions, "rows": [row]}, indent=1) + "\n")
        command = "python benchmarks/profiles.py " + " ".join(sys.argv[1:])
        args.out.with_suffix(".md").write_text(
            "| design | samples | checkpoints | ATT(g, t) (placebos) | bootstrap draws | profile | peak RSS |\n"
            "|---|---|---|---|---|---|---|\n"
            f"| {row['design']} | {row['treated']:,} + {row['held_out']:,} held out | {len(steps)} | {row['cells']:,} "
            f"({placebos:,}) | {args.draws} | {estimated:.1f} s | {row['peak_mib'] / 1024:.2f} GiB |\n\n"
            f"`{command}`: {versions['device']}, {versions['cpus']} CPUs, numpy {versions['numpy']}, Python "
            f"{versions['python']}, {versions['date']}.\n")


if __name__ == "__main__":
    main()
