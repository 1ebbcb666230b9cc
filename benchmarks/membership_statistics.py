"""What the membership statistics add to an audit at a million samples, against the forward pass.

    python benchmarks/membership_statistics.py [--samples 1000000] [--shard 16384] [--seq-len 64]

The audit's statistics over samples have two parts: the rows functions (per shard, while the forward pass
runs: `membership_rows` for `membership` and again for `unlearning_membership`) and the final reductions
over every sample (ROC AUCs of four scores for each probe, TPR at 1% FPR, the Min-K% sorts). This script
times, in one run on the same machine:

- the forward pass (memaudit's scorer, products membership needs) of one shard of `--shard` samples of
  `--seq-len` tokens through a ~0.65M-parameter GPT-NeoX (the streaming benchmark's model), giving seconds
  per sample;
- both rows functions on that shard's products, seconds per sample;
- the final reductions of both probes over `--samples` samples (scores drawn at random: the time does not
  depend on their values), measured at that size (sorting makes them n log n).

and prints the statistics' share of the forward pass at `--samples`: (rows per sample x N + reductions at N)
/ (forward per sample x N). The forward pass is timed on one shard and scaled linearly (it is linear in the
samples; a 1M-sample forward pass takes ~27 minutes on 2 cores, see benchmarks/streaming.py).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def best_of(fn, repeats: int = 3) -> float:
    """Fastest of `repeats` timed calls (seconds)."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def reductions(rows: dict, n_members: int) -> None:
    """What membership and unlearning_membership compute from every sample's scores at the end."""
    from memaudit.measures import roc_auc, tpr_at_fpr

    for _ in ("membership", "unlearning_membership"):
        for score, values in rows.items():
            roc_auc(values[:n_members], values[n_members:])
            tpr_at_fpr(values[:n_members], values[n_members:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=1_000_000)
    parser.add_argument("--shard", type=int, default=16384)
    parser.add_argument("--seq-len", type=int, default=64)
    args = parser.parse_args()

    import torch
    from streaming import VOCAB, make_checkpoint
    from transformers import AutoModelForCausalLM

    from memaudit.engine.forward import score
    from memaudit.measures import membership_rows

    torch.set_num_threads(max(1, torch.get_num_threads()))
    with tempfile.TemporaryDirectory() as work:
        make_checkpoint(Path(work))
        model = AutoModelForCausalLM.from_pretrained(Path(work) / "step-1").eval()
    tokens = np.random.default_rng(0).integers(0, VOCAB, (args.shard, args.seq_len))
    needed = {"hits", "logprobs", "entropy", "logp2"}
    products = {}

    def forward():
        products.update(score(model, tokens, needed, 256, "cpu")[0])

    forward_s = best_of(forward, repeats=2) / args.shard
    zlib_len = np.full(args.shard, 100.0)
    rows_s = 2 * best_of(lambda: membership_rows(products["logprobs"], products["entropy"], products["logp2"],
                                                 zlib_len, 20.0)) / args.shard
    rng = np.random.default_rng(1)
    scores = {name: rng.normal(size=args.samples) for name in ("loss", "zlib", "min_k", "min_k_pp")}
    final_s = best_of(lambda: reductions(scores, args.samples // 2), repeats=2)

    n = args.samples
    forward_total, stats_total = forward_s * n, rows_s * n + final_s
    print(f"forward pass          {forward_s * 1e3:8.3f} ms/sample  ({args.shard:,} samples of {args.seq_len} tokens)")
    print(f"rows functions (x2)   {rows_s * 1e3:8.3f} ms/sample")
    print(f"final reductions (x2) {final_s:8.2f} s at {n:,} samples (8 AUCs + 8 TPRs)")
    print(f"at {n:,} samples: forward {forward_total:,.0f} s, statistics {stats_total:,.1f} s, "
          f"statistics / forward = {stats_total / forward_total:.3f}")


if __name__ == "__main__":
    main()
