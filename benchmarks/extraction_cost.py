"""What sampling schemes add to an audit's forward pass, at a 50k vocabulary on the CPU.

    python benchmarks/extraction_cost.py
    python benchmarks/extraction_cost.py --tiny   # a tiny model, 4 x 16 tokens: what the tests run

One run: a random GPT-NeoX (Pythia-70m shape: width 512, 6 layers, vocabulary 50304), 16 samples of
128 tokens, float32; memaudit's scoring with the products every audit makes (hits, log-probabilities)
against the same scoring with the `extraction_risk` probe's default schemes (temperature 1, top-k 40)
and with a top-p scheme (0.9 at temperature 0.8). Prints the median seconds of 3 runs and the ratios.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu import build  # noqa: E402

from memaudit.engine.forward import score  # noqa: E402
from memaudit.engine.sampling import product_name  # noqa: E402

CASES = {"audit without schemes": set(),
         "+ T=1, top_k=40 (the defaults)": {product_name({}), product_name({"top_k": 40})},
         "+ T=0.8, top_p=0.9": {product_name({"temperature": 0.8, "top_p": 0.9})}}


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="a tiny model and 4 x 16 tokens (seconds)")
    tiny = parser.parse_args().tiny
    torch.set_grad_enabled(False)
    size, vocab, (n, seq) = ("tiny", 512, (4, 16)) if tiny else ("70m", 50304, (16, 128))
    model = build(size, vocab, seq, torch.float32, "cpu")
    tokens = np.random.default_rng(0).integers(0, vocab, size=(n, seq))
    times = {}
    for name, products in CASES.items():
        score(model, tokens, products, 8, "cpu")  # warm-up
        runs = []
        for _ in range(3):
            t = time.perf_counter()
            score(model, tokens, products, 8, "cpu")
            runs.append(time.perf_counter() - t)
        times[name] = float(np.median(runs))
    base = times["audit without schemes"]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {n} x {seq} tokens, vocabulary {vocab}")
    for name, seconds in times.items():
        print(f"{name:34s} {seconds:7.3f} s   x{seconds / base:.3f}")


if __name__ == "__main__":
    main()
