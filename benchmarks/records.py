"""Whole records of varied length (`samples: records`) against the same tokens in fixed-length samples.

Draws record lengths like book passages (log-normal; by default median 300 tokens, 5-95%: ~75-1,200, clipped to
[16, 4 x window]: an assumption, say so when you quote it), scores them with memaudit's record path (rolling windows,
batches grouped by length, padded after the longest window of each batch) and the same number of tokens cut into
rows of the window length with the fixed-length path, and prints the time ratio and the share of the model's input
positions that are padding. One process, one model, the same products (hits, logprobs), measured back to back.

    python benchmarks/records.py                       # GPT-NeoX 14m shape on this machine's device
    python benchmarks/records.py --tiny                # seconds on a CPU (the test suite runs this)
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import torch


def draw_lengths(n: int, median: float, sigma: float, window: int, seed: int = 0) -> np.ndarray:
    """(n,) record lengths in tokens, log-normal around `median`, clipped to [16, 4 * window]."""
    rng = np.random.default_rng(seed)
    return np.clip(np.round(median * np.exp(sigma * rng.standard_normal(n))), 16, 4 * window).astype(np.int64)


def padding_share(lengths: np.ndarray, window: int, batch_size: int) -> float:
    """Share of the input positions the model reads that are padding, as memaudit.engine.forward.score_records
    batches these records (windows sorted by length, batches of at most batch_size * window input tokens)."""
    from memaudit.engine.forward import record_windows

    _, _, inputs, _ = record_windows(lengths, window)  # (windows,)
    inputs = np.sort(inputs)[::-1]
    read, i, budget = 0, 0, batch_size * window
    while i < len(inputs):
        take = inputs[i:i + max(1, budget // int(inputs[i]))]
        read += int(take[0]) * len(take)
        i += len(take)
    return 1 - inputs.sum() / read


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="a tiny model and few records: seconds on a CPU")
    parser.add_argument("--records", type=int, default=512)
    parser.add_argument("--window", type=int, default=512)
    parser.add_argument("--median", type=float, default=300)
    parser.add_argument("--sigma", type=float, default=0.85)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    if args.tiny:
        args.records, args.window, args.median, args.batch_size, args.repeats = 48, 64, 40, 8, 1
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    from memaudit.engine.forward import score, score_records

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    width, layers, vocab = (32, 2, 512) if args.tiny else (128, 6, 50304)  # 14m: Pythia's smallest shape
    torch.manual_seed(0)
    model = GPTNeoXForCausalLM(GPTNeoXConfig(vocab_size=vocab, hidden_size=width, num_hidden_layers=layers,
                                             num_attention_heads=4, intermediate_size=4 * width,
                                             max_position_embeddings=args.window)).eval().to(device)
    lengths = draw_lengths(args.records, args.median, args.sigma, args.window)  # (records,)
    rng = np.random.default_rng(1)
    rows = np.zeros((len(lengths), int(lengths.max())), dtype=np.int64)  # (records, longest), padded after each
    rows[np.arange(rows.shape[1]) < lengths[:, None]] = rng.integers(0, vocab, int(lengths.sum()))
    stream = rows[np.arange(rows.shape[1]) < lengths[:, None]]  # the same tokens, one after another
    fixed = stream[: len(stream) // args.window * args.window].reshape(-1, args.window)  # (rows, window)
    products = {"hits", "logprobs"}

    def timed(fn) -> float:
        fn()  # warm: compilation, allocation
        best = float("inf")
        for _ in range(args.repeats):
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - start)
        return best

    t_records = timed(lambda: score_records(model, rows, lengths, products, args.batch_size, device, args.window))
    t_fixed = timed(lambda: score(model, fixed, products, args.batch_size, device))
    per_token_records = t_records / int((lengths - 1).sum())
    per_token_fixed = t_fixed / (fixed.shape[0] * (fixed.shape[1] - 1))
    result = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"), "model": "tiny" if args.tiny else "14m shape",
        "records": len(lengths), "window": args.window, "median_tokens": float(np.median(lengths)),
        "p5_p95_tokens": [int(np.percentile(lengths, 5)), int(np.percentile(lengths, 95))],
        "longer_than_window": int((lengths - 1 > args.window).sum()),
        "padding_share": round(float(padding_share(lengths, args.window, args.batch_size)), 4),
        "records_s": round(t_records, 4), "fixed_s": round(t_fixed, 4),
        "records_vs_fixed_per_token": round(per_token_records / per_token_fixed, 3),
    }
    print(f"{len(lengths)} records, median {result['median_tokens']:.0f} tokens (5-95%: {result['p5_p95_tokens']}), "
          f"window {args.window}, {result['longer_than_window']} longer than it")
    print(f"padding: {100 * result['padding_share']:.1f}% of the input positions read")
    print(f"records / fixed-length, per scored token = {result['records_vs_fixed_per_token']:.3f} "
          f"({t_records:.3f} s / {t_fixed:.3f} s)")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
