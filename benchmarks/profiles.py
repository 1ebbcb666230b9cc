"""Memorization profiles at scale: peak memory and seconds of the estimate on a panel of a million samples.

    python benchmarks/profiles.py [--samples 1000000] [--checkpoints 20] [--control 0.1] [--draws 999]

Builds the per-sample panel as an audit does (memaudit.engine.panel.Panel: each checkpoint's per-sample
columns written as they come), for `--samples` samples over `--checkpoints` checkpoints, with a planted
effect, a `--control` share of never-trained samples and the rest in cohorts spread over the checkpoints;
then runs memorization_profile's estimate on it (every ATT(g, t), event-time aggregation with influence-
function standard errors, the multiplier bootstrap, the pre-trend test). Prints the seconds of each part,
the process's peak RSS (VmHWM) and the instantaneous estimate against the planted value. The forward passes
are not part of it (benchmarks/streaming.py measures them); at 1M samples and 20 checkpoints they take
~9 hours on 2 CPU cores, the profile seconds.
"""

from __future__ import annotations

import argparse
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=1_000_000)
    parser.add_argument("--checkpoints", type=int, default=20)
    parser.add_argument("--control", type=float, default=0.1)
    parser.add_argument("--draws", type=int, default=999)
    args = parser.parse_args()

    from memaudit.engine.panel import Panel
    from memaudit.probes.profile import cohorts_of, profile

    n, t_all = args.samples, args.checkpoints
    n_control = int(n * args.control)
    steps = [100 * t for t in range(t_all)]
    rng = np.random.default_rng(0)
    train_steps = rng.integers(1, steps[-1] + 1, n - n_control).astype(np.float64)  # (treated,)
    cohort = np.concatenate([cohorts_of(train_steps, steps), np.full(n_control, -1)])
    samples = {"train": SimpleNamespace(ids=range(n - n_control)), "valid": SimpleNamespace(ids=range(n_control))}
    panel = Panel(samples, {"memorization"})
    t0 = time.perf_counter()
    level = rng.normal(0, 1, n).astype(np.float32)  # each sample's own level
    for t in range(t_all):  # one checkpoint's columns at a time, as the run adds them
        y = level + 0.05 * t + rng.normal(0, 0.5, n).astype(np.float32)
        y[: n - n_control] += np.where(t >= cohort[: n - n_control], 0.3, 0.0)  # planted effect of training
        panel.add(f"step-{steps[t]}", steps[t], {"memorization": {"train": {"loss": -y[: n - n_control]},
                                                                  "valid": {"loss": -y[n - n_control:]}}})
    del level, y
    built = time.perf_counter() - t0
    t0 = time.perf_counter()
    outcome = np.concatenate([-panel.values("memorization", "loss", "train"),
                              -panel.values("memorization", "loss", "valid")], axis=1)  # (checkpoints, samples)
    usable = (cohort >= 1) & (cohort < t_all)
    treated, control = usable, cohort < 0
    keep = treated | control
    result = profile(outcome[:, keep], cohort[keep], treated[keep], control[keep], steps, draws=args.draws)
    estimated = time.perf_counter() - t0
    panel.close()
    print(f"panel {n:,} samples x {t_all} checkpoints ({n_control:,} never trained), "
          f"{len(result['att'])} ATT(g, t)")
    print(f"building the panel   {built:8.1f} s")
    print(f"profile estimate     {estimated:8.1f} s  (with {args.draws} bootstrap draws)")
    print(f"peak RSS             {peak_mib():8.0f} MiB")
    print(f"instantaneous        {result['instantaneous']:.4f} [{result['instantaneous_lo']:.4f}, "
          f"{result['instantaneous_hi']:.4f}] (planted 0.3000); pre-trend p = {result['pretrend_p']:.3f}")


if __name__ == "__main__":
    main()
